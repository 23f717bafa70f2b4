# SPDX-License-Identifier: MIT
"""Kernel health per test: real kernel reports (tests/unit/data/console, Debian's 6.1) found,
fingerprinted alike across boots, and turned into the test's failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.plugin.health import (
    apply_findings,
    is_fatal,
    item_findings,
    scan_kernel_log,
    taint_finding,
)
from harness.plugin.protocol import ItemDone

CONSOLE = Path(__file__).parent / "data" / "console"

# The shape of a UBSAN report on 6.x (none of the recorded kernels has UBSAN traps to trigger).
UBSAN = """\
[   10.100000] ================================================================================
[   10.100001] UBSAN: array-index-out-of-bounds in drivers/vfio/sample.c:12:5
[   10.100002] index 4 is out of range for type 'int [4]'
[   10.100003] CPU: 0 PID: 77 Comm: python3 Tainted: G           OE      6.1.0 #1
[   10.100004] Call Trace:
[   10.100005]  <TASK>
[   10.100006]  dump_stack_lvl+0x44/0x5c
[   10.100007]  ubsan_epilogue+0x5/0x40
[   10.100008]  __ubsan_handle_out_of_bounds.cold+0x44/0x49
[   10.100009]  hmdev_region_rw+0x99/0x100 [vfio_harness_mdev]
[   10.100010]  </TASK>
[   10.100011] ================================================================================
"""


def lines(name: str) -> list[str]:
    return (CONSOLE / name).read_text().splitlines()


@pytest.mark.parametrize(
    ("log", "kind", "fatal"),
    [
        ("warning-module-init", "warning", False),
        ("bug-kernel-bug-at", "bug", True),
        ("oops-null-deref-panic", "panic", True),
        ("hung-task", "hung", False),
        ("soft-lockup", "hung", False),
    ],
)
def test_real_reports_are_found_with_a_stable_fingerprint(log: str, kind: str, fatal: bool) -> None:
    first = scan_kernel_log(lines(f"{log}-1.log"))
    second = scan_kernel_log(lines(f"{log}-2.log"))
    assert first and second
    assert kind in {f.kind for f in first}
    # The same bug on another boot (other addresses, CPUs, KASLR): the same fingerprint.
    assert first[0].fingerprint == second[0].fingerprint
    assert is_fatal(first) is fatal


def test_a_clean_boot_has_no_findings() -> None:
    assert scan_kernel_log(lines("clean-boot.log")) == []


def test_ubsan_and_kmemleak_are_findings() -> None:
    (ubsan,) = scan_kernel_log(UBSAN.splitlines())
    assert ubsan.kind == "warning"
    assert "UBSAN: array-index-out-of-bounds" in ubsan.headline
    leak = "[   99.000000] kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"
    (found,) = scan_kernel_log([leak])
    assert found.kind == "kmemleak"
    (again,) = scan_kernel_log([leak.replace("3 new", "7 new")])
    assert again.fingerprint == found.fingerprint


def test_what_lockdown_refused_is_a_finding() -> None:
    # As 6.1 prints them under Secure Boot (kernel_lockdown.7).
    refused = (
        "[   42.123456] Lockdown: python3: /dev/mem,kmem,port is restricted; "
        "see man kernel_lockdown.7"
    )
    (found,) = scan_kernel_log([refused])
    assert found.kind == "lockdown"
    assert found.headline == refused
    boot = "[    0.000000] Kernel is locked down from EFI Secure Boot; see man kernel_lockdown.7"
    assert scan_kernel_log([boot]) == [], "the boot's own notice is not a refusal"


def test_taint_counts_new_bits_except_module_loading() -> None:
    warn, out_of_tree, unsigned = 1 << 9, 1 << 12, 1 << 13
    assert taint_finding(0, out_of_tree | unsigned) is None  # insmod of the vendor module
    finding = taint_finding(out_of_tree, out_of_tree | warn)
    assert finding is not None
    assert "+W" in finding.headline and "now WO" in finding.headline
    assert taint_finding(warn, warn) is None


def report(outcome: str, when: str) -> pytest.TestReport:
    return pytest.TestReport("t.py::test", ("t.py", 1, "test"), {}, outcome, None, when)  # type: ignore[arg-type]


def test_a_finding_fails_a_passed_test_and_is_added_to_a_failed_one() -> None:
    done = ItemDone("t.py::test", lines("warning-module-init-1.log"), [], 0, 1 << 9, None)
    findings = item_findings(done)
    assert [f.kind for f in findings] == ["warning", "taint"]

    passed = [report("passed", "setup"), report("passed", "call"), report("passed", "teardown")]
    apply_findings(passed, findings)
    assert [r.outcome for r in passed] == ["passed", "failed", "passed"]
    text = str(passed[1].longrepr)
    assert "WARNING: CPU: 1 PID: 88 at /tmp/vmk/kmod/crashme.c:8 crashme_warn" in text
    assert f"[fingerprint {findings[0].fingerprint}]" in text
    assert ("kernel_splat", f"warning {findings[0].fingerprint} {findings[0].headline}") in (
        passed[2].user_properties
    )

    failed = [report("passed", "setup"), report("failed", "call"), report("passed", "teardown")]
    apply_findings(failed, findings)
    assert failed[1].longrepr is None  # its own failure stays; the splat is a section
    assert failed[1].sections[0][0] == "kernel health"

    skipped = [report("skipped", "setup"), report("passed", "teardown")]
    apply_findings(skipped, findings)
    assert skipped[0].outcome == "failed"


def test_lines_between_tests_are_labelled() -> None:
    done = ItemDone("t.py::test", [], lines("warning-module-init-2.log"), 0, 0, None)
    (finding,) = item_findings(done)
    assert "between tests" in finding.render()
