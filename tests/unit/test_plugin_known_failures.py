# SPDX-License-Identifier: MIT
"""--known-failures: a driver's known bugs become expected failures of their severity; a pass
or a failure of another kind is not hidden; the entries are checked when loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from harness.plugin import known_failures as kf

TOML = """
[[failure]]
test = "test_irq.py::test_loopback_trigger[*-intx]"
kernels = ["6.1"]
severity = "uapi"
bug = "no loopback"

[[failure]]
test = "test_regions.py::test_region_reads_to_the_edges[region7]"
severity = "safety"
crashes = true
bug = "reads past the buffer"
"""
NODE = "tests/uapi/test_irq.py::test_loopback_trigger[type1-intx]"  # as the guest names it


def report(
    outcome: Literal["passed", "failed", "skipped"],
    when: Literal["setup", "call", "teardown"] = "call",
    severity: str | None = None,
) -> pytest.TestReport:
    made = pytest.TestReport(NODE, ("f.py", 1, "t"), {}, outcome, None, when)
    if severity:
        made.user_properties.append(("severity", severity))
    return made


def test_entries_match_by_test_and_kernel(tmp_path: Path) -> None:
    (tmp_path / "known.toml").write_text(TOML)
    known = kf.KnownFailures(kf.load(tmp_path / "known.toml"))
    on_61 = kf.kernel_names("6.1.0-50-amd64", "bookworm")
    assert known.match(NODE, on_61) is not None
    assert known.match(NODE, kf.kernel_names("6.12.117", "debug")) is None
    assert known.match(NODE.replace("intx", "msi"), on_61) is None  # brackets are literal
    crash = known.match("x/test_regions.py::test_region_reads_to_the_edges[region7]", on_61)
    assert crash is not None and crash.crashes
    assert known.unused() == []


def test_a_known_failure_is_expected_and_named() -> None:
    entry = kf.KnownFailure("x", "uapi", "no loopback")
    reports = [report("passed", "setup"), report("failed", severity="uapi")]
    kf.apply(reports, entry)
    assert reports[1].outcome == "skipped"
    assert reports[1].wasxfail == "known uapi bug: no loopback"
    assert ("known_severity", "uapi") in reports[1].user_properties


def test_a_pass_of_a_known_failure_fails_as_a_strict_xfail() -> None:
    reports = [report("passed", "setup"), report("passed")]
    kf.apply(reports, kf.KnownFailure("x", "uapi", "no loopback"))
    assert reports[1].failed
    assert "[XPASS(strict)] known uapi bug: no loopback" in str(reports[1].longrepr)


def test_a_failure_of_another_severity_is_not_hidden() -> None:
    reports = [report("failed", severity="safety")]
    kf.apply(reports, kf.KnownFailure("x", "uapi", "no loopback"))
    assert reports[0].failed
    assert "expected a uapi failure (no loopback); this one is safety" in reports[0].sections[0][1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[failure]]\ntest = 'x'\nbug = 'b'\n", "needs test, severity and bug"),
        ("[[failure]]\ntest = 'x'\nbug = 'b'\nseverity = 'bad'\n", "severity must be one of"),
        (
            "[[failure]]\ntest = 'x'\nbug = 'b'\nseverity = 'uapi'\nwhen = 1\n",
            r"unknown \['when'\]",
        ),
        ("not toml [", "not valid TOML"),
    ],
)
def test_malformed_entries_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "k.toml").write_text(text)
    with pytest.raises(kf.KnownFailuresError, match=message):
        kf.load(tmp_path / "k.toml")


def test_a_name_is_a_file_of_the_suite(tmp_path: Path) -> None:
    assert kf.resolve("mtty", tmp_path) == tmp_path / "known" / "mtty.toml"
    assert kf.resolve("./mine.toml", tmp_path) == Path("mine.toml")


def test_the_shipped_mtty_file_loads() -> None:
    suite = Path(__file__).resolve().parents[1] / "uapi"
    entries = kf.load(kf.resolve("mtty", suite))
    assert len(entries) > 10
    assert {e.severity for e in entries} == {"safety", "uapi"}
