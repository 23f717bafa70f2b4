# SPDX-License-Identifier: MIT
"""Issue 19, libvirt: in an L1 that serves VMs (vm_images/nested/trixie-libvirt.toml),
libvirt runs diskless q35 domains with our mdev as a `<hostdev type='mdev'>`, and the checks
look through libvirt's own interfaces (virsh, its domain XML, QMP via `qemu-monitor-command`).

harness/mgmt/libvirt_checks.py has the checks; tests/vm/guest/libvirt_checks.py runs them in
a fresh L1 with our module loaded and prints the JSON report this test judges. `virsh
detach-device --live` is recorded, not judged: nothing in an OS-less guest acknowledges a
PCIe unplug (the report's "detach").

The nested end-to-end steps (test_nested.py's, harness/nested/steps.py) also run against a
QEMU libvirt started from a domain XML with our mdev as a hostdev, qtest playing the guest
driver (harness/mgmt/libvirt_steps.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from harness.vm.machine import Vm
from tests.vm.l1 import GUEST, STEPS_QTEST, libvirt_image, run_in_l1

pytestmark = pytest.mark.vm

GUEST_CHECKS = GUEST / "libvirt_checks.py"
GUEST_STEPS = GUEST / "libvirt_steps.py"
# Every check of harness/mgmt/libvirt_checks.py; a run that reports fewer lost some.
CHECKS = 9

RecordProperty = Callable[[str, object], None]


def judge(report: dict[str, Any], problems: list[str], expected: int = CHECKS) -> None:
    results: dict[str, str] = report.get("results", {})
    failed = {name: why for name, why in results.items() if why != "ok"}
    problems = [f"{name}: {why}" for name, why in failed.items()] + problems
    if "setup" in report:
        problems.insert(0, f"the libvirt checks broke outside a check:\n{report['setup']}")
    problems += [f"cleanup: {why}" for why in report.get("cleanup", [])]
    if (failed or "setup" in report) and report.get("trace_tail"):
        problems.append("QEMU trace (last lines):\n  " + "\n  ".join(report["trace_tail"]))
    if len(results) < expected and not problems:
        problems.append(f"only {len(results)} of {expected} checks ran: {sorted(results)}")
    print(f"{len(results) - len(failed)} of {len(results)} checks passed")
    assert not problems, "\n".join(problems)


def record_facts(
    vm: Vm, report: dict[str, Any], started: float, record_property: RecordProperty
) -> dict[str, Any]:
    """What every libvirt test records. "kernel", "accelerator" and "accelerator_reason" as
    the plugin's fixtures record them (its per-kernel summary reads them)."""
    facts = {
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "accelerator_reason": vm.accelerator.reason,
        "domain_type": report.get("domain_type"),
        "qemu_l1": report.get("qemu_l1"),
        "libvirt": report.get("libvirt"),
        "wall_s": round(time.monotonic() - started, 1),
        "l1_checks_s": report.get("wall_s"),
    }
    for name, value in facts.items():
        record_property(name, value)
    return facts


def test_libvirt_domains_with_our_mdev(record_property: RecordProperty) -> None:
    image = libvirt_image()
    started = time.monotonic()
    report, problems, vm = run_in_l1(image, GUEST_CHECKS, ["/var/tmp/vfio-harness-libvirt"], 600)
    facts = record_facts(vm, report, started, record_property)
    for name, value in report.get("timings", {}).items():
        record_property(name, value)
    print(f"\n{json.dumps(facts)}")
    print(f"timings (s): {json.dumps(report.get('timings', {}))}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    print(f"seen: {json.dumps(report.get('seen', {}))}")
    print(f"detach-device --live: {json.dumps(report.get('detach'))}")
    record_property("detach", json.dumps(report.get("detach")))
    judge(report, problems)


def test_nested_steps_through_libvirts_qemu(record_property: RecordProperty) -> None:
    image = libvirt_image()
    started = time.monotonic()
    report, problems, vm = run_in_l1(image, GUEST_STEPS, ["/var/tmp/vfio-harness-steps"], 300)
    facts = record_facts(vm, report, started, record_property)
    record_property("machine_ready_s", report.get("seconds_machine_ready"))
    print(f"\n{json.dumps(facts)}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    judge(report, problems, STEPS_QTEST)
