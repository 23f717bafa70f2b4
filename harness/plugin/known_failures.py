# SPDX-License-Identifier: MIT
"""A driver's known bugs (`--known-failures FILE`): the tests they fail are expected to fail,
named with the bug and its severity; anything else the driver does must pass.

    [[failure]]
    test = "test_irq.py::test_loopback_trigger[*-intx]"   # the test id without its kernel
    kernels = ["6.1"]           # optional: only on these kernels: a series ("6.1"), a --kernel
                                # id ("bookworm", "debug"), or "local" (--target local)
    severity = "uapi"           # safety, uapi or missing
    bug = "a DATA_NONE trigger disables INTx instead of firing it (mtty_set_irqs)"
    crashes = true              # optional: it takes the kernel down: with --target local it is
                                # not run (in a VM it runs: the VM is replaced afterwards)

A matching failure becomes an expected failure (xfailed, with the bug as the reason). A
matching test that passes fails: the bug is fixed, or the entry is wrong: the file needs
updating, as with a strict xfail. An entry that matches no test of the run is reported. A
FILE given by a plain name is tests/uapi/known/<name>.toml of the suite (mtty: the kernel's
sample driver).

The results come from the guest (or --target local), so the verdict is applied to the reports
here, on the host, like harness.plugin.health's known kernel issues.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

SEVERITIES = ("safety", "uapi", "missing")
KNOWN_DIR = "known"  # beside the suite's tests


class KnownFailuresError(ValueError):
    """The file is unreadable or an entry is malformed; the message names which."""


@dataclass(frozen=True)
class KnownFailure:
    test: str
    severity: str
    bug: str
    kernels: tuple[str, ...] = ()
    crashes: bool = False

    def matches(self, nodeid: str, kernel_names: frozenset[str]) -> bool:
        """`nodeid` as the guest knows it: without the --kernel parametrization (so that one
        pattern serves every kernel and --target local); * and ? are the only wildcards."""
        if self.kernels and not kernel_names & set(self.kernels):
            return False
        path, _, test = nodeid.partition("::")
        name = f"{path.rsplit('/', maxsplit=1)[-1]}::{test}"  # from any rootdir
        return re.fullmatch(_wildcards(self.test), name) is not None

    @property
    def reason(self) -> str:
        return f"known {self.severity} bug: {self.bug}"


def _wildcards(pattern: str) -> str:
    """A regex of `pattern` where only * (any run) and ? (any character) are wildcards: test
    ids have [brackets] that fnmatch would read as character classes."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


def resolve(value: str, suite: Path) -> Path:
    path = Path(value).expanduser()
    if path.is_file() or path.suffix == ".toml" or "/" in value:
        return path
    return suite / KNOWN_DIR / f"{value}.toml"


def load(path: Path) -> tuple[KnownFailure, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KnownFailuresError(f"--known-failures {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KnownFailuresError(f"--known-failures {path}: not valid TOML: {exc}") from None
    entries = []
    for number, entry in enumerate(data.get("failure", []), start=1):
        where = f"{path}: failure #{number}"
        unknown = set(entry) - {"test", "severity", "bug", "kernels", "crashes"}
        if unknown or not {"test", "severity", "bug"} <= set(entry):
            raise KnownFailuresError(
                f"{where}: needs test, severity and bug (optional kernels, crashes); "
                f"unknown {sorted(unknown)}"
            )
        if entry["severity"] not in SEVERITIES:
            raise KnownFailuresError(f"{where}: severity must be one of {', '.join(SEVERITIES)}")
        entries.append(
            KnownFailure(
                str(entry["test"]),
                str(entry["severity"]),
                str(entry["bug"]),
                tuple(str(k) for k in entry.get("kernels", ())),
                bool(entry.get("crashes", False)),
            )
        )
    return tuple(entries)


class KnownFailures:
    def __init__(self, entries: tuple[KnownFailure, ...]) -> None:
        self.entries = entries
        self.used: set[KnownFailure] = set()

    def match(self, nodeid: str, kernel_names: frozenset[str]) -> KnownFailure | None:
        for entry in self.entries:
            if entry.matches(nodeid, kernel_names):
                self.used.add(entry)
                return entry
        return None

    def unused(self) -> list[KnownFailure]:
        return [entry for entry in self.entries if entry not in self.used]


def kernel_names(release: str, *ids: str) -> frozenset[str]:
    """What entries' `kernels` may name: the series of `release` ("6.1"), and `ids`."""
    series = ".".join(release.split(".")[:2])
    return frozenset({series, *ids})


def not_run(item: pytest.Item, entry: KnownFailure) -> list[pytest.TestReport]:
    """Reports of a test that takes the kernel down: an expected failure, not run."""
    reason = f"{entry.reason} (not run: it takes the kernel down)"
    keywords: dict[str, Literal[1]] = dict.fromkeys(item.keywords, 1)
    setup = pytest.TestReport(
        item.nodeid, item.location, keywords, "skipped", (str(item.path), 0, reason), "setup"
    )
    setup.wasxfail = reason
    teardown = pytest.TestReport(item.nodeid, item.location, keywords, "passed", None, "teardown")
    for report in (setup, teardown):
        report.user_properties.append(("known_failure", reason))
        report.user_properties.append(("known_severity", entry.severity))
    return [setup, teardown]


def apply(reports: list[pytest.TestReport], entry: KnownFailure) -> None:
    """A failure of the entry's severity expected (xfailed); a pass unexpected (failed, as a
    strict xfail); a failure of another severity stays a failure: a bug the entry is not."""
    from harness.plugin.verdicts import severity_of

    failed = [r for r in reports if r.failed]
    for report in reports:
        report.user_properties.append(("known_failure", entry.reason))
        report.user_properties.append(("known_severity", entry.severity))
    if failed:
        other = {severity_of(r) for r in failed} - {entry.severity}
        if other:
            note = f"expected a {entry.severity} failure ({entry.bug}); this one is "
            for report in failed:
                report.sections.append(("known failure", note + ", ".join(sorted(other))))
            return
        for report in failed:
            report.outcome = "skipped"
            report.wasxfail = entry.reason
        return
    call = next((r for r in reports if r.when == "call" and r.passed), None)
    if call is not None:
        call.outcome = "failed"
        call.longrepr = (
            f"[XPASS(strict)] {entry.reason}\n"
            "The test passed: the bug is fixed, or the entry is wrong: update the "
            "--known-failures file."
        )
