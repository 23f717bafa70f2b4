# SPDX-License-Identifier: MIT
"""results.json: one run's results, for tools (`vfio-harness compare`, `merge`, the HTML report)
and for CI systems. The schema is versioned: a reader refuses a version it does not know.

    {"schema": "vfio-harness-results", "version": 1,
     "run": {harness, python, host, started, finished, exit_status, command, firmware,
             driver, qemu, kernels: [{choice, release, accelerator, commit}], shard,
             missing_shards, kernels_asked},
     "tests": [{id, nodeid, kernel, release, iommu_mode, accelerator, outcome, when,
                severity, area, reaches_driver, duration_s, message, errnos,
                splats: [{kind, fingerprint, headline}], interrupted, known}]}

`id` is the test without its kernel (test_x.py::test_y[type1]): with `kernel` (the --kernel
entry it ran for) it names a result, and it is what two kernels' results are paired by.
`outcome` is passed, failed, error (its setup or teardown failed), skipped, xfailed or
xpassed; `severity` (safety, uapi, missing) is that of a failure, or of the known bug an
xfail stands for. `errnos` are the errno names the failure message mentions (EINVAL, ...).
The README's "results.json" section documents every field.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "vfio-harness-results"
SCHEMA_VERSION = 1
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
BAD_OUTCOMES = frozenset({"failed", "error"})
_ERRNO = re.compile(r"\bE[A-Z0-9]{2,15}\b")
# Only real errno names: a failure's text also holds register dumps (EFLAGS) and the like.
_ERRNO_NAMES = frozenset(errno.errorcode.values())


class ResultsError(ValueError):
    """A file that is not a results.json this version of the harness reads."""


@dataclass(frozen=True)
class Splat:
    kind: str
    fingerprint: str
    headline: str

    @classmethod
    def parse(cls, text: str) -> Splat:
        """The plugin's "kind fingerprint headline" property."""
        kind, _, rest = text.partition(" ")
        fingerprint, _, headline = rest.partition(" ")
        return cls(kind, fingerprint, headline)


@dataclass
class TestResult:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    id: str
    nodeid: str
    kernel: str
    release: str | None = None
    iommu_mode: str | None = None
    accelerator: str | None = None
    outcome: str = "passed"
    when: str = "call"  # the phase that decided the outcome
    severity: str | None = None
    area: str | None = None
    reaches_driver: bool = True
    duration_s: float = 0.0
    message: str | None = None
    errnos: list[str] = field(default_factory=list)
    splats: list[Splat] = field(default_factory=list)
    interrupted: str | None = None  # "timeout" or "error"
    known: str | None = None  # the known bug (driver or kernel) an xfail stands for

    @property
    def key(self) -> tuple[str, str]:
        return self.kernel, self.id

    @property
    def bad(self) -> bool:
        return self.outcome in BAD_OUTCOMES


@dataclass
class KernelInfo:
    choice: str
    release: str | None = None
    accelerator: str | None = None
    commit: str | None = None  # a --kernel-tree's commit, when its tree is a git checkout


@dataclass
class RunInfo:
    harness: str = ""
    python: str = ""
    host: str = ""
    started: str = ""
    finished: str = ""
    exit_status: int | None = None
    command: list[str] = field(default_factory=list)
    firmware: str = "direct"
    driver: str | None = None
    qemu: str | None = None
    kernels: list[KernelInfo] = field(default_factory=list)
    shard: str | None = None  # "K/N" for one shard of a split run ("merged ..." when joined)
    missing_shards: list[str] = field(default_factory=list)  # of a merge that lacks some
    kernels_asked: list[str] = field(default_factory=list)  # --kernel's ids, as given


@dataclass
class Results:
    run: RunInfo
    tests: list[TestResult]

    def by_key(self) -> dict[tuple[str, str], TestResult]:
        return {test.key: test for test in self.tests}

    def kernels(self) -> list[str]:
        return sorted({test.kernel for test in self.tests})

    def to_json(self) -> str:
        data = {"schema": SCHEMA, "version": SCHEMA_VERSION, **asdict(self)}
        return json.dumps(data, indent=1) + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f".{path.name}.tmp")
        scratch.write_text(self.to_json())
        scratch.replace(path)


def without_kernel(nodeid: str, kernel: str) -> str:
    """The node id without the kernel's part of its parameters (the kernel is the last)."""
    if nodeid.endswith(f"[{kernel}]"):
        return nodeid[: -len(kernel) - 2]
    if nodeid.endswith(f"-{kernel}]"):
        return nodeid[: -len(kernel) - 2] + "]"
    return nodeid


def kernel_of_nodeid(nodeid: str, kernels: Iterable[str]) -> str | None:
    """Which of `kernels` (ids as --kernel named them) the node id was collected for: for a
    report that carries no properties (an xdist worker that crashed under it)."""
    for kernel in sorted(kernels, key=len, reverse=True):  # custom-debug before debug
        if without_kernel(nodeid, kernel) != nodeid:
            return kernel
    return None


def errnos_in(message: str | None) -> list[str]:
    """Errno names a failure message mentions, in order, once each."""
    found = [m for m in _ERRNO.findall(message or "") if m in _ERRNO_NAMES]
    return list(dict.fromkeys(found))


def load(path: Path) -> Results:
    """A results.json, or ResultsError saying why not."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ResultsError(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ResultsError(f"{path}: not JSON ({exc})") from None
    return from_dict(data, str(path))


def from_dict(data: Any, where: str = "results") -> Results:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"{where}: not a vfio-harness results.json")
    if data.get("version") != SCHEMA_VERSION:
        raise ResultsError(
            f"{where}: results format version {data.get('version')}, this harness reads "
            f"version {SCHEMA_VERSION}"
        )
    try:
        run = dict(data["run"])
        run["kernels"] = [KernelInfo(**k) for k in run.get("kernels", [])]
        tests = []
        for raw in data["tests"]:
            entry = dict(raw)
            entry["splats"] = [Splat(**s) for s in entry.get("splats", [])]
            tests.append(TestResult(**entry))
        return Results(RunInfo(**run), tests)
    except (KeyError, TypeError) as exc:
        raise ResultsError(f"{where}: malformed ({exc})") from None


__all__ = [
    "BAD_OUTCOMES",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "KernelInfo",
    "Results",
    "ResultsError",
    "RunInfo",
    "Splat",
    "TestResult",
    "errnos_in",
    "from_dict",
    "kernel_of_nodeid",
    "load",
    "without_kernel",
]
