# SPDX-License-Identifier: MIT
"""Run the live migration in L1: two mdevs of one type, a source QEMU and a target QEMU
(`-incoming defer`) on them, both qtest-driven machines that run a halting firmware; the
checks of migration_checks.py; a JSON-able report with QEMU's numbers. Never raises for a
failed check; a failure to set up is reported under "setup".
"""

from __future__ import annotations

import random
import time
import traceback
from pathlib import Path
from typing import Any

from harness.mdev import MdevSysfs
from harness.nested.checks import Results
from harness.nested.machine import Probed
from harness.nested.migration import Migration, halting_firmware
from harness.nested.migration_checks import MigrationRun, run_migration_checks
from harness.nested.qemu import L1Qemu, L1Spec, qemu_version
from harness.nested.qtest_machine import QtestMachine
from harness.nested.run import QemuSide, create_mdev, remove_mdev, tail
from harness.nested.scenario import Regs, Scenario
from harness.refdev import contract as c

MEMORY_MIB = 128
DMA_LENGTH = 3 * 4096 + 123
# Without a dirty-page tracker on the device or the IOMMU, QEMU 10 refuses to migrate it
# unless told to (and then counts on the container's tracking of pinned pages).
ENABLE_MIGRATION = ("enable-migration=on",)


def close_all(report: dict[str, Any], qemus: dict[str, L1Qemu], mdevs: list[str]) -> None:
    """Quit the QEMUs and remove the mdevs, keeping what the report needs of them: the end of
    each trace and stderr, and any mdev that is still there."""
    for name, qemu in qemus.items():
        report.setdefault("trace_tails", {})[name] = tail(qemu.trace(), 30)
        report.setdefault("qemu_stderr", {})[name] = qemu.stderr_tail(20)
        qemu.close()
    for uuid in mdevs:
        remove_mdev(uuid)
    report["mdevs_left"] = [d.uuid for d in MdevSysfs().devices()]


def migrating_qemu(
    workdir: Path, name: str, uuid: str, firmware: Path, *, incoming: bool = False
) -> L1Qemu:
    """A running qtest-driven machine on the mdev `uuid` that can migrate, or (`incoming`) a
    target waiting for a `migrate-incoming`."""
    spec = L1Spec(
        mdev=f"/sys/bus/mdev/devices/{uuid}",
        workdir=workdir / name,
        mode="qtest",
        memory_mib=MEMORY_MIB,
        bios=firmware,
        # No guest code runs, and under KVM an MSI goes to KVM's irqchip (irqfd) instead of
        # the RAM address where qtest looks for it.
        accelerator="tcg",
        ivshmem_bytes=0,  # ivshmem is a migration blocker
        vfio_options=ENABLE_MIGRATION,
        paused=False,
        extra_args=("-incoming", "defer") if incoming else (),
    )
    return L1Qemu(spec)


def machine_scenario(qemu: L1Qemu, uuid: str, group: str, ref_type: c.RefType) -> Scenario:
    assert qemu.qtest is not None
    machine = QtestMachine(qemu.qtest, MEMORY_MIB << 20)
    return Scenario(machine, QemuSide(qemu), uuid, group, ref_type.mem_size, DMA_LENGTH)


def _target_scenario(
    target: L1Qemu, source: Scenario, uuid: str, group: str, ref_type: c.RefType
) -> Scenario:
    """The target's machine, with the device where the source's guest put it (the config
    check reads the target's BARs and compares)."""
    found = source.dev
    device = Probed(found.bdf, found.vendor, found.device, dict(found.bars))
    scenario = machine_scenario(target, uuid, group, ref_type)
    scenario.device = device
    scenario.regs = Regs(scenario.machine, device.bar(0).address)
    return scenario


def run_live_migration(workdir: Path, seed: int, ref_type: c.RefType = c.SMALL) -> dict[str, Any]:
    report: dict[str, Any] = {"variant": "live-migration", "qemu_l1": qemu_version()}
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    firmware = halting_firmware(workdir / "halt.bin")
    made: list[str] = []
    sides: dict[str, L1Qemu] = {}
    try:
        source_uuid, source_group = create_mdev(ref_type)
        made.append(source_uuid)
        target_uuid, target_group = create_mdev(ref_type)
        made.append(target_uuid)
        report["mdevs"] = {"source": source_uuid, "target": target_uuid, "type": ref_type.type_id}
        report["l1_qemu_accelerator"] = "tcg"
        sides["source"] = migrating_qemu(workdir, "source", source_uuid, firmware)
        sides["target"] = migrating_qemu(workdir, "target", target_uuid, firmware, incoming=True)
        source_qemu = sides["source"]
        source = machine_scenario(source_qemu, source_uuid, source_group, ref_type)
        run = MigrationRun(
            source=source,
            migration=Migration(
                source_qemu.qmp, sides["target"].qmp, f"unix:{workdir / 'migration.sock'}"
            ),
            target_machine=lambda: _target_scenario(
                sides["target"], source, target_uuid, target_group, ref_type
            ),
            quit_source=source_qemu.close,
            rng=random.Random(seed),
        )
        report["seconds_qemu_start"] = round(time.monotonic() - started, 2)
        results = run_migration_checks(run)
        report["results"] = results.results
        report["seconds"] = results.seconds
        report["numbers"] = run.numbers
    except Exception:
        report["setup"] = traceback.format_exc()
        report.setdefault("results", Results().results)
    finally:
        close_all(report, sides, made)
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report
