"""Known kernel issues: matched by a report's content, and they xfail instead of failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plugin.health import Finding, apply_findings, scan_kernel_log
from harness.plugin.known_issues import known_issue_of

DATA = Path(__file__).parent / "data" / "lockdep"


def lockdep_finding(name: str) -> Finding:
    findings = scan_kernel_log((DATA / name).read_text().splitlines())
    assert len(findings) == 1
    assert "possible circular locking dependency" in findings[0].headline
    return findings[0]


def report(outcome: str = "passed") -> pytest.TestReport:
    return pytest.TestReport(
        nodeid="t.py::test_x",
        location=("t.py", 1, "test_x"),
        keywords={},
        outcome=outcome,  # type: ignore[arg-type]
        longrepr=None,
        when="call",
    )


def test_type1s_own_lock_order_is_a_known_issue() -> None:
    issue = known_issue_of(lockdep_finding("type1-unpin-in-dma-unmap.log"))
    assert issue is not None and issue.key == "type1-notify-unmap-lock-order"


def test_a_cycle_through_our_lock_is_not_known() -> None:
    assert known_issue_of(lockdep_finding("hmdev-lock-across-pin.log")) is None


def test_other_splats_are_not_known_issues() -> None:
    warning = Finding(
        "warning", "WARNING: CPU: 0 PID: 1 at x.c:1 f", "f" * 16, ("lock(&iommu->lock);",)
    )
    assert known_issue_of(warning) is None


def test_a_passed_test_with_only_a_known_issue_is_xfailed() -> None:
    reports = [report()]
    apply_findings(reports, [lockdep_finding("type1-unpin-in-dma-unmap.log")])
    assert reports[0].outcome == "skipped"
    assert "type1-notify-unmap-lock-order" in reports[0].wasxfail
    assert dict(reports[0].sections)["known kernel issues"].count("DEADLOCK") == 1


def test_a_known_issue_does_not_hide_another_finding() -> None:
    reports = [report()]
    findings = [
        lockdep_finding("type1-unpin-in-dma-unmap.log"),
        lockdep_finding("hmdev-lock-across-pin.log"),
    ]
    apply_findings(reports, findings)
    assert reports[0].outcome == "failed"
    assert "&s->lock" in str(reports[0].longrepr)
    assert not hasattr(reports[0], "wasxfail")


def test_a_failed_test_stays_failed_with_a_known_issue() -> None:
    reports = [report("failed")]
    apply_findings(reports, [lockdep_finding("type1-unpin-in-dma-unmap.log")])
    assert reports[0].outcome == "failed"
    assert not hasattr(reports[0], "wasxfail")
