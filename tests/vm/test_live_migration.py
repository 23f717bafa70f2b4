# SPDX-License-Identifier: MIT
"""Issue 19, point 4: live migration of a running guest's device between two QEMUs in L1,
through VFIO migration v2 (harness/nested/migration_checks.py says what is checked).

In a fresh L1 of the trixie-libvirt image (QEMU 10): two mdevs of one type, a source and a
target QEMU, both qtest-driven machines running a firmware that only halts. The source guest
leaves state in registers, both halves of BAR2, guest RAM, kept pins and an armed MSI; QEMU is
held in pre-copy while the device writes guest RAM and the guest writes BAR2; then it switches
over, and the target must hold all of it, run a DMA and raise the MSI; the source device must
have stopped and its pins must be gone with its QEMU.

test_failed_migrations_leave_the_source_running (point 5): a target of another type refuses
the stream (our driver's EINVAL, seen in QEMU's trace), a target killed mid-stream, and a
stream with one byte flipped in the device's data (refused; the untouched copy loads); after
each the source runs with its device back in RUNNING, its state intact and a DMA working.

test_a_driver_that_loses_dirty_data_fails: the same run on the test build with fault
MIG_LOSE_DIRTY (kmod/faults.h: pre-copy never resends what changed) must fail exactly where
the lost data is compared, proving the checks can see a driver that loses state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.vm.l1 import GUEST, host_qemu_version, libvirt_image, run_in_l1

pytestmark = pytest.mark.vm

CHECKS = GUEST / "live_migration_checks.py"
# Every check of migration_checks.run_migration_checks, and of run_failure_checks.
EXPECTED_CHECKS = {"carry": 15, "failures": 6}
MIG_LOSE_DIRTY = 1 << 5
SEED = 19

RecordProperty = Callable[[str, object], None]


def migrate(
    record_property: RecordProperty,
    fault: int = 0,
    variant: str = "carry",
) -> tuple[dict[str, str], list[str]]:
    image = libvirt_image()
    started = time.monotonic()
    args = [variant, f"/tmp/migration-{variant}", str(SEED)]
    report, problems, vm = run_in_l1(image, CHECKS, args, 300, fault=fault)
    wall = round(time.monotonic() - started, 1)
    if "setup" in report:
        pytest.fail(f"setting up the migration failed:\n{report['setup']}", pytrace=False)
    numbers = report.get("numbers", {})
    properties = {
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "accelerator_reason": vm.accelerator.reason,
        "l1_qemu_accelerator": report.get("l1_qemu_accelerator"),
        "qemu_host": host_qemu_version(),
        "qemu_l1": report.get("qemu_l1"),
        "wall_s": wall,
        "l1_checks_s": report.get("wall_s"),
        **{f"migration_{k}": v for k, v in numbers.items()},
    }
    for name, value in properties.items():
        record_property(name, value)
    print(f"\nlive migration: {json.dumps(properties)}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    results: dict[str, str] = report["results"]
    expected = EXPECTED_CHECKS[variant]
    if len(results) < expected:
        problems.append(f"only {len(results)} of {expected} checks ran: {sorted(results)}")
    if report.get("mdevs_left"):
        problems.append(f"mdevs left behind in L1: {report['mdevs_left']}")
    if any(why != "ok" for why in results.values()):
        for name, lines in report.get("trace_tails", {}).items():
            print(f"QEMU {name}: stderr {report.get('qemu_stderr', {}).get(name)!r}")
            print(f"QEMU {name}: trace tail\n  " + "\n  ".join(lines))
    return results, problems


def failures(results: dict[str, str]) -> list[str]:
    return [f"{name}: {why}" for name, why in results.items() if why != "ok"]


def test_live_migration_carries_the_device(record_property: RecordProperty) -> None:
    results, problems = migrate(record_property)
    assert not failures(results) and not problems, "\n".join(failures(results) + problems)


def test_failed_migrations_leave_the_source_running(record_property: RecordProperty) -> None:
    results, problems = migrate(record_property, variant="failures")
    assert not failures(results) and not problems, "\n".join(failures(results) + problems)


def test_a_driver_that_loses_dirty_data_fails(record_property: RecordProperty) -> None:
    results, problems = migrate(record_property, fault=MIG_LOSE_DIRTY)
    failed = {name for name, why in results.items() if why != "ok"}
    assert failed == {"target.device_memory"}, (
        "with pre-copy losing dirty chunks, exactly the target's device memory check must "
        f"fail; failed: {sorted(failed)}\n" + "\n".join(failures(results))
    )
    assert "BAR2+" in results["target.device_memory"]
    assert not problems, "\n".join(problems)
