# SPDX-License-Identifier: MIT
"""Issue 19, libvirt: in an L1 that serves VMs (vm_images/nested/trixie-libvirt.toml),
libvirt runs diskless q35 domains with our mdev as a `<hostdev type='mdev'>`, and the checks
look through libvirt's own interfaces (virsh, its domain XML, QMP via `qemu-monitor-command`).

harness/mgmt/libvirt_checks.py has the checks; tests/vm/guest/libvirt_checks.py runs them in
a fresh L1 with our module loaded and prints the JSON report this test judges. `virsh
detach-device --live` is recorded, not judged: nothing in an OS-less guest acknowledges a
PCIe unplug (the report's "detach").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.vm.l1 import GUEST, libvirt_image, run_in_l1

pytestmark = pytest.mark.vm

GUEST_CHECKS = GUEST / "libvirt_checks.py"
# Every check of harness/mgmt/libvirt_checks.py; a run that reports fewer lost some.
CHECKS = 9

RecordProperty = Callable[[str, object], None]


def judge(report: dict[str, Any], problems: list[str], record_property: RecordProperty) -> None:
    results: dict[str, str] = report.get("results", {})
    failed = {name: why for name, why in results.items() if why != "ok"}
    problems = [f"{name}: {why}" for name, why in failed.items()] + problems
    if "setup" in report:
        problems.insert(0, f"the libvirt checks broke outside a check:\n{report['setup']}")
    problems += [f"cleanup: {why}" for why in report.get("cleanup", [])]
    if len(results) < CHECKS and not problems:
        problems.append(f"only {len(results)} of {CHECKS} checks ran: {sorted(results)}")
    print(f"{len(results) - len(failed)} of {len(results)} checks passed")
    assert not problems, "\n".join(problems)


def test_libvirt_domains_with_our_mdev(record_property: RecordProperty) -> None:
    image = libvirt_image()
    started = time.monotonic()
    report, problems, vm = run_in_l1(image, GUEST_CHECKS, ["/var/tmp/vfio-harness-libvirt"], 600)
    wall_s = round(time.monotonic() - started, 1)
    # "kernel", "accelerator" and "accelerator_reason" as the plugin's fixtures record them
    # (its per-kernel summary reads them).
    facts = {
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "accelerator_reason": vm.accelerator.reason,
        "domain_type": report.get("domain_type"),
        "qemu_l1": report.get("qemu_l1"),
        "libvirt": report.get("libvirt"),
        "wall_s": wall_s,
        "l1_checks_s": report.get("wall_s"),
    }
    for name, value in {**facts, **report.get("timings", {})}.items():
        record_property(name, value)
    print(f"\n{json.dumps(facts)}")
    print(f"timings (s): {json.dumps(report.get('timings', {}))}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    print(f"seen: {json.dumps(report.get('seen', {}))}")
    print(f"detach-device --live: {json.dumps(report.get('detach'))}")
    record_property("detach", json.dumps(report.get("detach")))
    judge(report, problems, record_property)
