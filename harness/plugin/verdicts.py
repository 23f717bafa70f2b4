# SPDX-License-Identifier: MIT
"""What a run found, by severity and area, and whether it tested the driver at all.

The suite labels each report (tests/uapi/conftest.py): ("area", "regions"), ("reaches_driver",
"yes"|"no": a core-only test exercises only VFIO core, type1 or the VFS) and, for a failure,
("severity", "safety"|"uapi"|"missing"). A failure with a kernel splat during the test is a
safety problem whatever the test said. At the end:

- the terminal summary shows, per kernel, failures by severity, outcomes by area, and how many
  of the tests that ran reached the driver;
- a run of the suite in which no test that reached the driver passed or failed ends with
  EXIT_UNTESTED (65): everything was skipped or core-only, so the driver was never tested.

Reports come through pytest's hooks, so this works the same under xdist and with --target
local.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

SEVERITIES = ("safety", "uapi", "missing")
EXIT_UNTESTED = 65  # harness.cli_errors.EXIT_UNTESTED, kept import-free for the plugin


@dataclass
class _Test:
    kernel: str
    area: str
    reaches_driver: bool
    driver: str = "?"
    outcome: str = "passed"
    severity: str | None = None  # of a failure, or of the known bug an xfail stands for


def _file_area(nodeid: str) -> str:
    """An area for a test the suite did not label (one not run): its file's name."""
    return nodeid.partition("::")[0].rsplit("/", 1)[-1].removeprefix("test_").removesuffix(".py")


def severity_of(report: pytest.TestReport) -> str:
    properties = dict(report.user_properties)
    if "kernel_splat" in properties:
        return "safety"
    severity = str(properties.get("severity", "uapi"))
    return severity if severity in SEVERITIES else "uapi"


class Verdicts:
    def __init__(self, json_path: Path | None = None) -> None:
        self.tests: dict[str, _Test] = {}
        self.json_path = json_path

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        test = self.tests.get(report.nodeid)
        if test is None:
            if "area" not in properties and "known_failure" not in properties:
                return  # not a test of the suite (or a report the host made for one unseen)
            test = self.tests[report.nodeid] = _Test(
                str(properties.get("kernel", os.uname().release)),
                str(properties.get("area") or _file_area(report.nodeid)),
                properties.get("reaches_driver") != "no",
            )
        if "driver" in properties:
            test.driver = str(properties["driver"])
        if report.failed:
            if test.outcome != "failed":
                test.severity = severity_of(report)
            test.outcome = "failed"
        elif report.skipped and test.outcome == "passed":
            test.outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
            known = properties.get("known_severity")
            if test.outcome == "xfailed" and known in SEVERITIES:
                test.severity = str(known)

    def untested(self) -> bool:
        """The suite ran, and no test that reaches the driver passed or failed."""
        ran = [t for t in self.tests.values() if t.outcome in ("passed", "failed")]
        return bool(self.tests) and not any(t.reaches_driver for t in ran)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.untested() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = EXIT_UNTESTED

    def summary(self) -> list[dict[str, object]]:
        """Per kernel and driver: failures and known bugs by severity, outcomes by area, and
        how many of the tests that ran reached the driver."""
        groups: dict[str, list[_Test]] = defaultdict(list)
        for test in self.tests.values():
            groups[test.kernel].append(test)
        result = []
        for kernel, tests in sorted(groups.items()):
            # Tests without a device (containers, sysfs types) name no driver.
            drivers = Counter(t.driver for t in tests if t.driver != "?")
            driver = drivers.most_common(1)[0][0] if drivers else "?"
            ran = [t for t in tests if t.outcome in ("passed", "failed")]
            areas: dict[str, Counter[str]] = defaultdict(Counter)
            for test in tests:
                areas[test.area][test.outcome] += 1
            failed = Counter(t.severity for t in tests if t.outcome == "failed")
            known = Counter(t.severity for t in tests if t.outcome == "xfailed" and t.severity)
            result.append(
                {
                    "kernel": kernel,
                    "driver": driver,
                    "failed": {s: failed[s] for s in SEVERITIES},
                    "known_bugs": {s: known[s] for s in SEVERITIES},
                    "ran": len(ran),
                    "reached_driver": sum(t.reaches_driver for t in ran),
                    "areas": {a: dict(c) for a, c in sorted(areas.items())},
                }
            )
        return result

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.tests:
            return
        summary = self.summary()
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            self.json_path.write_text(json.dumps(summary, indent=2) + "\n")
        write = terminalreporter.write_line
        terminalreporter.section("vfio-harness: findings by severity and area")
        for group in summary:
            failed = cast(dict[str, int], group["failed"])
            known = cast(dict[str, int], group["known_bugs"])
            ran, reached = cast(int, group["ran"]), cast(int, group["reached_driver"])
            write(
                f"{group['kernel']}, driver {group['driver']}: failed "
                + ", ".join(f"{failed[s]} {s}" for s in SEVERITIES)
                + f"; {reached} of the {ran} tests that ran reached the driver "
                f"({ran - reached} core-only)"
            )
            if any(known.values()):
                write(
                    "  known bugs (--known-failures, xfailed): "
                    + ", ".join(f"{known[s]} {s}" for s in SEVERITIES)
                )
            for area, counts in cast(dict[str, dict[str, int]], group["areas"]).items():
                write(
                    f"  {area:<10} {counts.get('passed', 0):>4} passed "
                    f"{counts.get('failed', 0):>4} failed {counts.get('skipped', 0):>4} skipped "
                    f"{counts.get('xfailed', 0):>3} xfailed"
                )
        if self.untested():
            write(
                "vfio-harness: no test that reaches the driver ran (all skipped or core-only): "
                f"the driver was not tested; exit {EXIT_UNTESTED}",
                red=True,
            )
