# SPDX-License-Identifier: MIT
"""`--results PATH`: the run's results.json (harness.report.results), from the reports of every
test as they arrive (so under xdist the controller writes it), with the run's environment:
harness and Python versions, the kernels asked for and what each booted, the driver, QEMU.

A --kernel-tree build names its tree's commit: `vfio-harness run` passes it in
HARNESS_KERNEL_COMMITS (a JSON object: kernel id -> commit).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import __version__
from harness.plugin.ktap import crash_message, failure_line
from harness.plugin.properties import (
    ACCELERATOR,
    INTERRUPTED,
    KERNEL,
    KERNEL_CHOICE,
    KERNEL_SPLAT,
)
from harness.plugin.verdicts import SEVERITIES, severity_of
from harness.report.results import (
    KernelInfo,
    Results,
    RunInfo,
    Splat,
    TestResult,
    errnos_in,
    kernel_of_nodeid,
    without_kernel,
)

COMMITS_ENV = "HARNESS_KERNEL_COMMITS"
LOCAL_KERNEL = "local"
QEMU = "qemu-system-x86_64"


class ResultsCollector:
    def __init__(self, config: pytest.Config, path: Path, kernels: list[str]) -> None:
        self.config = config
        self.path = path
        self.kernel_ids = kernels  # as --kernel named them: the last parameter of node ids
        self.tests: dict[str, TestResult] = {}
        self.drivers: Counter[str] = Counter()
        self.started = _now()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        test = self.tests.get(report.nodeid)
        if test is None:
            # A report without properties (its xdist worker crashed) still names its kernel.
            kernel = kernel_of_nodeid(report.nodeid, self.kernel_ids) or self._default_kernel()
            test = TestResult(without_kernel(report.nodeid, kernel), report.nodeid, kernel)
            self.tests[report.nodeid] = test
        if properties.get(KERNEL_CHOICE):
            test.kernel = str(properties[KERNEL_CHOICE])
            test.id = without_kernel(report.nodeid, test.kernel)
        for name, attribute in ((KERNEL, "release"), (ACCELERATOR, "accelerator"),
                                ("iommu_mode", "iommu_mode"), ("area", "area"),
                                (INTERRUPTED, "interrupted")):  # fmt: skip
            if properties.get(name):
                setattr(test, attribute, str(properties[name]))
        if "reaches_driver" in properties:
            test.reaches_driver = properties["reaches_driver"] != "no"
        if properties.get("driver") and report.when == "setup":
            self.drivers[str(properties["driver"])] += 1
        test.duration_s = round(test.duration_s + report.duration, 3)
        for name, value in report.user_properties:
            splat = Splat.parse(str(value)) if name == KERNEL_SPLAT else None
            if splat is not None and splat not in test.splats:
                test.splats.append(splat)
        self._outcome(test, report, properties)

    def _outcome(
        self, test: TestResult, report: pytest.TestReport, properties: dict[str, object]
    ) -> None:
        if report.failed:
            if test.outcome in ("failed", "error"):
                return  # the first failure decides (a teardown error after a failed call)
            # An error is the harness's, not the test's: its setup or teardown failed, or its
            # VM did not start or died under it. Only a test's own failure has a severity.
            interrupted = properties.get(INTERRUPTED)
            own = report.when == "call" and interrupted != "error"
            test.outcome = "failed" if own else "error"
            test.when = report.when
            test.severity = severity_of(report) if own and interrupted is None else None
            test.message = failure_line(report)
            test.errnos = errnos_in(crash_message(report))
        elif report.skipped and test.outcome == "passed":
            xfail = hasattr(report, "wasxfail")
            test.outcome = "xfailed" if xfail else "skipped"
            test.when = report.when
            test.message = str(report.wasxfail) if xfail else _skip_reason(report)
            known = properties.get("known_severity")
            test.severity = str(known) if xfail and known in SEVERITIES else None
            test.known = str(properties.get("known_failure") or report.wasxfail) if xfail else None
        elif report.passed and report.when == "call" and hasattr(report, "wasxfail"):
            test.outcome = "xpassed"
            test.message = str(report.wasxfail)

    def _default_kernel(self) -> str:
        return LOCAL_KERNEL if self.config.getoption("--target") == "local" else "host"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session):  # type: ignore[no-untyped-def]
        yield  # after every other plugin: verdicts may change the exit status
        results = Results(self._run_info(int(session.exitstatus)), list(self.tests.values()))
        results.write(self.path)

    def _run_info(self, exit_status: int) -> RunInfo:
        return RunInfo(
            harness=__version__,
            python=platform.python_version(),
            host=f"{platform.node()} {platform.release()} {platform.machine()}",
            started=self.started,
            finished=_now(),
            exit_status=exit_status,
            command=list(self.config.invocation_params.args),
            firmware=str(self.config.getoption("--firmware", "direct")),
            driver=self.drivers.most_common(1)[0][0] if self.drivers else None,
            qemu=_qemu_version() if self.config.getoption("--target") == "vm" else None,
            kernels=self._kernels(),
            shard=self.config.getoption("--shard"),
            kernels_asked=list(self.kernel_ids),
        )

    def _kernels(self) -> list[KernelInfo]:
        commits = _commits()
        seen: dict[str, KernelInfo] = {}
        for test in self.tests.values():
            info = seen.setdefault(
                test.kernel, KernelInfo(test.kernel, commit=commits.get(test.kernel))
            )
            info.release = info.release or test.release
            info.accelerator = info.accelerator or test.accelerator
        return [seen[name] for name in sorted(seen)]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "")


def _commits() -> dict[str, str]:
    try:
        found = json.loads(os.environ.get(COMMITS_ENV) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def _qemu_version() -> str | None:
    try:
        run = subprocess.run(
            [QEMU, "--version"], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return run.stdout.splitlines()[0] if run.returncode == 0 and run.stdout else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["COMMITS_ENV", "ResultsCollector"]
