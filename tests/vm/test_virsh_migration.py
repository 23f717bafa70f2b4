# SPDX-License-Identifier: MIT
"""Issue 19, point 4 through libvirt: `virsh migrate --live` of a domain with our mdev between
two libvirt daemons in one L1 (the system one and an unprivileged user's session daemon with
another host UUID), onto a second mdev of the same type, checked exactly as
test_live_migration.py checks the plain-QEMU migration (harness/nested/migration_checks.py):
registers, both halves of BAR2, guest RAM the device wrote while libvirt's migration was held
in pre-copy, kept pins, an armed MSI, then a DMA and its MSI on the destination. Only the last
check differs: libvirt itself ends the source QEMU once the destination runs, so the source's
pins must be gone by then (harness/mgmt/libvirt_migration.py says how it is all set up).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.vm.l1 import GUEST, host_qemu_version, libvirt_image, run_in_l1

pytestmark = pytest.mark.vm

CHECKS = GUEST / "virsh_migration_checks.py"
EXPECTED_CHECKS = 15  # every check of migration_checks.run_migration_checks
SEED = 19
DIAGNOSTICS = (
    "virsh_migrate",
    "virsh_migrate_begin_s",
    "libvirt_log_source",
    "libvirt_log_target",
    "session_daemon_log",
    "trace_tail_source",
    "trace_tail_target",
)

RecordProperty = Callable[[str, object], None]


def test_virsh_migrate_carries_the_device(record_property: RecordProperty) -> None:
    image = libvirt_image()
    started = time.monotonic()
    report, problems, vm = run_in_l1(image, CHECKS, ["/var/tmp/vfio-harness-virsh", str(SEED)], 600)
    wall = round(time.monotonic() - started, 1)
    numbers = report.get("numbers", {})
    properties = {
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "accelerator_reason": vm.accelerator.reason,
        "domain_type": report.get("domain_type"),
        "qemu_host": host_qemu_version(),
        "qemu_l1": report.get("qemu_l1"),
        "libvirt": report.get("libvirt"),
        "wall_s": wall,
        "l1_checks_s": report.get("wall_s"),
        **{f"migration_{k}": v for k, v in numbers.items()},
    }
    for name, value in properties.items():
        record_property(name, value)
    print(f"\nvirsh migrate: {json.dumps(properties)}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    if "setup" in report:
        details = {k: report.get(k) for k in ("virsh_migrate", "session_daemon_log", "cleanup")}
        pytest.fail(
            f"setting up the migration failed:\n{report['setup']}\n{json.dumps(details)}",
            pytrace=False,
        )
    results: dict[str, str] = report["results"]
    failed = [f"{name}: {why}" for name, why in results.items() if why != "ok"]
    if len(results) < EXPECTED_CHECKS:
        problems.append(f"only {len(results)} of {EXPECTED_CHECKS} checks ran: {sorted(results)}")
    problems += [f"cleanup: {why}" for why in report.get("cleanup", [])]
    if failed:
        problems += [f"{key}: {json.dumps(report.get(key), indent=1)}" for key in DIAGNOSTICS]
    assert not failed and not problems, "\n".join(failed + problems)
