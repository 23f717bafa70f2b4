# SPDX-License-Identifier: MIT
"""What a run found, by severity and area; a run that never reached the driver is not green."""

from __future__ import annotations

import json

import pytest

from harness.plugin.verdicts import EXIT_UNTESTED, Verdicts

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    core = item.get_closest_marker("core_only") is not None
    report.user_properties += [("area", "regions"), ("reaches_driver", "no" if core else "yes")]
    if report.failed:
        report.user_properties.append(("severity", "safety"))
"""


def test_failures_are_counted_by_severity_and_area(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SUITE)
    pytester.makepyfile(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_bad(): assert False\n"
        "@pytest.mark.core_only\ndef test_core(): pass\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "*, driver ?: failed 1 safety, 0 uapi, 0 missing; 2 of the 3 tests that ran "
            "reached the driver (1 core-only)",
            "*regions*2 passed*1 failed*",
        ]
    )


def test_a_run_that_never_reached_the_driver_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SUITE)
    pytester.makepyfile(
        "import pytest\n"
        "@pytest.mark.core_only\ndef test_core(): pass\n"
        "def test_skipped(): pytest.skip('the device lacks it')\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == EXIT_UNTESTED
    result.stdout.fnmatch_lines(["*no test that reaches the driver ran*exit 65*"])


def test_tests_outside_the_suite_are_not_counted() -> None:
    verdicts = Verdicts()
    report = pytest.TestReport("t.py::test", ("t.py", 1, "t"), {}, "passed", None, "call")
    verdicts.pytest_runtest_logreport(report)
    assert not verdicts.tests and not verdicts.untested()


def test_the_findings_are_written_as_json(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SUITE)
    pytester.makepyfile("def test_ok(): pass\ndef test_bad(): assert False\n")
    pytester.runpytest("-p", "no:cacheprovider", "--verdicts=v.json")
    [group] = json.loads((pytester.path / "v.json").read_text())
    assert group["failed"] == {"safety": 1, "uapi": 0, "missing": 0}
    assert (group["ran"], group["reached_driver"]) == (2, 2)
    assert group["areas"] == {"regions": {"passed": 1, "failed": 1}}
