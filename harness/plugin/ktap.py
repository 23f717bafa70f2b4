# SPDX-License-Identifier: MIT
"""`--ktap PATH`: the run's results as KTAP v1, which KernelCI and LKFT parse.

One subtest block per kernel (from the `kernel` user property the VM fixtures and the guest
proxy record; tests without one are grouped under "host"), one line per test with its
pytest node id as a stable name (spaces and '#' replaced, since KTAP names end at them).
A test is `not ok` if any phase failed, `ok ... # SKIP reason` if it was skipped, and
`ok ... # XFAIL` for an expected failure. Reports arrive through pytest_runtest_logreport,
so under xdist the controller writes the file from its workers' reports.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST_GROUP = "host"
_UNSAFE = re.compile(r"[\s#]+")


@dataclass
class KtapResult:
    name: str
    failed: bool = False
    skip_reason: str | None = None
    xfail: bool = False


@dataclass
class KtapCollector:
    path: Path
    groups: dict[str, dict[str, KtapResult]] = field(default_factory=dict)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        group = str(dict(report.user_properties).get("kernel", HOST_GROUP))
        tests = self.groups.setdefault(group, {})
        result = tests.setdefault(report.nodeid, KtapResult(ktap_name(report.nodeid)))
        if report.failed:
            result.failed = True
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                result.xfail = True
            else:
                result.skip_reason = skip_reason(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        del session
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(render(self.groups))


def ktap_name(nodeid: str) -> str:
    return _UNSAFE.sub("_", nodeid)


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        reason = str(longrepr or "")
    return " ".join(reason.split())


def _line(number: int, result: KtapResult) -> str:
    if result.failed:
        return f"not ok {number} {result.name}"
    if result.xfail:
        return f"ok {number} {result.name} # XFAIL"
    if result.skip_reason is not None:
        return f"ok {number} {result.name} # SKIP {result.skip_reason}".rstrip()
    return f"ok {number} {result.name}"


def _block(tests: Sequence[KtapResult], indent: str) -> list[str]:
    lines = [f"{indent}KTAP version 1", f"{indent}1..{len(tests)}"]
    lines += [indent + _line(i, t) for i, t in enumerate(tests, 1)]
    return lines


def render(groups: dict[str, dict[str, KtapResult]]) -> str:
    """KTAP v1: a top-level plan of kernels, each a subtest block of its tests."""
    lines = ["KTAP version 1", f"1..{len(groups)}"]
    for number, (group, tests) in enumerate(sorted(groups.items()), 1):
        results = list(tests.values())
        lines += _block(results, "    ")
        summary = KtapResult(ktap_name(group), failed=any(t.failed for t in results))
        lines.append(_line(number, summary))
    return "\n".join(lines) + "\n"
