# SPDX-License-Identifier: MIT
"""Run the steps in L1: create the mdev, start L1's QEMU on it, drive the machine, report.

`run_variant("qtest" | "l2", ...)` returns a JSON-able report: every check's result, timings,
QEMU's version, the tail of its trace log and (L2) the L2 console. It never raises for a
failed step; setting-up failures (no QEMU, no mdev) are reported under "setup".
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.mdev import MdevNotFoundError, MdevSysfs
from harness.nested.checks import Results
from harness.nested.qemu import L1Qemu, L1Spec, Mode, l1_accelerator, qemu_version
from harness.nested.qtest_machine import QtestMachine
from harness.nested.scenario import Scenario
from harness.nested.steps import run_steps
from harness.refdev import contract as c

QTEST_MEMORY_MIB = 128
TRACE_TAIL_LINES = 60


@dataclass
class QemuSide:
    """`QemuView` of a running L1 QEMU."""

    qemu: L1Qemu

    def trace(self) -> str:
        return self.qemu.trace()

    def open_files(self) -> list[str]:
        return self.qemu.open_files()

    def query_pci(self) -> list[dict[str, Any]]:
        buses: list[dict[str, Any]] = self.qemu.qmp.execute("query-pci")
        return buses

    def run_state(self) -> str:
        return str(self.qemu.qmp.execute("query-status")["status"])

    def stderr(self) -> str:
        return self.qemu.stderr_tail(1000)


def tail(text: str, lines: int = TRACE_TAIL_LINES) -> list[str]:
    return text.splitlines()[-lines:]


def create_mdev(ref_type: c.RefType) -> tuple[str, str]:
    """A new device of `ref_type`: (uuid, IOMMU group number)."""
    device = MdevSysfs().find_type(ref_type.type_id).create()
    group = device.iommu_group
    if group is None:
        device.remove()
        raise RuntimeError(f"mdev {device.uuid} has no IOMMU group")
    return device.uuid, str(group)


def remove_mdev(uuid: str) -> None:
    """Remove the device if it is still there."""
    with contextlib.suppress(MdevNotFoundError):
        MdevSysfs().device(uuid).remove(missing_ok=True)


MachineFactory = Callable[[L1Qemu], tuple[Any, int]]


def run_variant(
    variant: str,
    workdir: Path,
    *,
    ref_type: c.RefType = c.SMALL,
    spec_options: dict[str, Any] | None = None,
    make_machine: MachineFactory | None = None,
) -> dict[str, Any]:
    """Steps 1-5 on a fresh mdev of `ref_type` with L1 QEMU in `variant` mode."""
    report: dict[str, Any] = {"variant": variant, "qemu_l1": qemu_version()}
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    uuid, group = create_mdev(ref_type)
    report["mdev"] = {"uuid": uuid, "group": group, "type": ref_type.type_id}
    qemu: L1Qemu | None = None
    machine: Any = None
    try:
        mode: Mode = "qtest" if variant == "qtest" else "boot"
        options = {
            "memory_mib": QTEST_MEMORY_MIB,
            "accelerator": l1_accelerator(),
            **(spec_options or {}),
        }
        report["l1_qemu_accelerator"] = options["accelerator"]
        spec = L1Spec(mdev=f"/sys/bus/mdev/devices/{uuid}", workdir=workdir, mode=mode, **options)
        qemu = L1Qemu(spec)
        report["qemu_argv"] = qemu.argv
        report["seconds_qemu_start"] = round(time.monotonic() - started, 2)
        if make_machine is None:
            assert qemu.qtest is not None
            machine = QtestMachine(qemu.qtest, spec.memory_mib << 20)
            dma_length = 3 * 4096 + 123
        else:
            machine, dma_length = make_machine(qemu)
        report["seconds_machine_ready"] = round(time.monotonic() - started, 2)
        scenario = Scenario(machine, QemuSide(qemu), uuid, group, ref_type.mem_size, dma_length)
        results = run_steps(scenario)
        report["results"] = results.results
        report["seconds"] = results.seconds
        if qemu.qtest is not None:
            report["qtest_requests"] = qemu.qtest.requests
    except Exception:
        report["setup"] = traceback.format_exc()
        report.setdefault("results", Results().results)
    finally:
        if machine is not None and hasattr(machine, "close"):
            machine.close()
        if qemu is not None:
            report["trace_tail"] = tail(qemu.trace())
            report["qemu_stderr"] = qemu.stderr_tail(20)
            qemu.close()
            report["qemu_exit"] = qemu.process.returncode
        remove_mdev(uuid)
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report
