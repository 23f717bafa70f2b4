# SPDX-License-Identifier: MIT
"""`--ktap PATH` (or `-`, standard output; repeatable): the run's results as KTAP v1, which
KernelCI, LKFT and LAVA parse (Documentation/dev-tools/ktap.rst).

One subtest block per kernel as --kernel named it (the `kernel_choice` property, so a kernel
whose VM never started is still its own block; else the release seen, else "host"), headed
by "# Subtest: <kernel>" as kunit_parser.py expects; one line per test with its pytest node
id as a stable name ('#' and whitespace replaced, since KTAP names end at them).

    not ok N name # TIMEOUT   the test, or its guest, hung
    not ok N name # ERROR     its VM did not start or died, or its setup/teardown failed
    not ok N name             it failed
    ok N name # SKIP reason   skipped
    ok N name # XFAIL reason  an expected failure (a known bug of the driver or kernel)

Diagnostic lines ("# ...") before a test's result line give why it failed (the first line of
the failure) and each kernel splat with its fingerprint. Reports arrive through
pytest_runtest_logreport, so under xdist the controller writes KTAP from its workers' reports.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.plugin.properties import INTERRUPTED, KERNEL, KERNEL_CHOICE, KERNEL_SPLAT
from harness.report.results import kernel_of_nodeid, without_kernel

HOST_GROUP = "host"
STDOUT = "-"
DIAGNOSTIC_WIDTH = 300
REASON_WIDTH = 100  # a diagnostic line is one line; the JUnit file has the whole story
_UNSAFE = re.compile(r"[\s#]+")


@dataclass
class KtapResult:
    name: str
    failed: bool = False
    errored: bool = False  # a setup or teardown failed (pytest's "error")
    interrupted: str | None = None  # "timeout" or "error": see harness.plugin.properties
    skip_reason: str | None = None
    xfail_reason: str | None = None
    reason: str = ""  # of a TIMEOUT or an ERROR, on its result line (ktap.rst)
    diagnostics: list[str] = field(default_factory=list)

    def directive(self) -> str:
        if self.failed:
            reason = f" {self.reason}" if self.reason else ""
            if self.interrupted == "timeout":
                return f" # TIMEOUT{reason}"
            return f" # ERROR{reason}" if self.interrupted or self.errored else ""
        if self.xfail_reason is not None:
            return f" # XFAIL {self.xfail_reason}".rstrip()
        if self.skip_reason is not None:
            return f" # SKIP {self.skip_reason}".rstrip()
        return ""

    def add(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if report.failed:
            self.failed = True
            self.errored |= report.when != "call"
            if INTERRUPTED in properties:
                self.interrupted = str(properties[INTERRUPTED])
            line = failure_line(report)
            self.reason = self.reason or one_line(line)[:REASON_WIDTH]
            self.diagnostics.append(f"failure ({report.when}): {line}")
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                self.xfail_reason = one_line(str(report.wasxfail))
            else:
                self.skip_reason = skip_reason(report)
        for name, value in report.user_properties:
            splat = f"splat: {one_line(str(value))}"
            if name == KERNEL_SPLAT and splat not in self.diagnostics:
                self.diagnostics.append(splat)


@dataclass
class KtapCollector:
    outputs: Sequence[str]  # paths, or "-" for standard output
    config: pytest.Config | None = None
    kernels: Sequence[str] = ()  # ids as --kernel named them: the last parameter of node ids
    results: dict[str, KtapResult] = field(default_factory=dict)  # by node id, in run order
    groups: dict[str, tuple[int, str]] = field(default_factory=dict)  # node id -> group_of

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = self.results.setdefault(report.nodeid, KtapResult(ktap_name(report.nodeid)))
        result.add(report)
        # Any phase may be the first to know the kernel (a test's own record_property comes
        # after its setup report): the most specific name seen wins.
        group = group_of(report, self.kernels)
        if group[0] >= self.groups.get(report.nodeid, (-1, ""))[0]:
            self.groups[report.nodeid] = group

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        del session
        grouped: dict[str, dict[str, KtapResult]] = {}
        for nodeid, result in self.results.items():
            group = self.groups[nodeid][1]
            # Named without the kernel: the block says which, and names stay the same from
            # one kernel (or --kernel-tree build) to the next, as trackers need.
            result.name = ktap_name(without_kernel(nodeid, group))
            grouped.setdefault(group, {})[nodeid] = result
        text = render(grouped)
        for output in self.outputs:
            if output == STDOUT:
                self._print(text)
            else:
                path = Path(output)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def _print(self, text: str) -> None:
        reporter = self.config and self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write("\n" + text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def group_of(report: pytest.TestReport, kernels: Sequence[str] = ()) -> tuple[int, str]:
    """The report's kernel, and how sure that is: 2 as collected (its property, or its node
    id's last parameter), 1 as seen (the release), 0 none (host)."""
    properties = dict(report.user_properties)
    if properties.get(KERNEL_CHOICE):
        return 2, str(properties[KERNEL_CHOICE])
    collected = kernel_of_nodeid(report.nodeid, kernels)
    if collected is not None:
        return 2, collected
    if properties.get(KERNEL):
        return 1, str(properties[KERNEL])
    return 0, HOST_GROUP


def ktap_name(nodeid: str) -> str:
    return _UNSAFE.sub("_", nodeid)


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= DIAGNOSTIC_WIDTH else line[: DIAGNOSTIC_WIDTH - 3] + "..."


def crash_message(report: pytest.TestReport) -> str:
    """The failure's own message (the exception's, not the traceback's source lines), or the
    whole text of a failure the harness wrote (a guest that died)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    return str(message) if message else str(report.longrepr or "").strip()


def failure_line(report: pytest.TestReport) -> str:
    """What failed, in one line: the first line of crash_message."""
    lines = crash_message(report).splitlines()
    return one_line(lines[0]) if lines else "(no message)"


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        reason = str(longrepr or "")
    return one_line(reason)


def _result_lines(number: int, result: KtapResult, indent: str) -> list[str]:
    lines = [f"{indent}# {line}" for line in result.diagnostics]
    status = "not ok" if result.failed else "ok"
    return [*lines, f"{indent}{status} {number} {result.name}{result.directive()}"]


def render(groups: dict[str, dict[str, KtapResult]]) -> str:
    """KTAP v1: a top-level plan of kernels, each a subtest block of its tests."""
    lines = ["KTAP version 1", f"1..{len(groups)}"]
    for number, (group, tests) in enumerate(sorted(groups.items()), 1):
        results = list(tests.values())
        name = ktap_name(group)
        lines += ["    KTAP version 1", f"    # Subtest: {name}", f"    1..{len(results)}"]
        for index, result in enumerate(results, 1):
            lines += _result_lines(index, result, "    ")
        lines += _result_lines(number, KtapResult(name, failed=any(t.failed for t in results)), "")
    return "\n".join(lines) + "\n"


__all__ = ["HOST_GROUP", "STDOUT", "KtapCollector", "KtapResult", "ktap_name", "render"]
