# SPDX-License-Identifier: MIT
"""The issue's steps 1-5, checked from both sides: what the guest driver sees (`Machine`) and
what L1's QEMU says it did (`QemuView`: its trace log, open files, QMP).

The checks live in step1_qemu.py .. step5_irqs.py; this module runs them in order, each
with the checks it needs (checks.py reports a check whose prerequisite failed as not run).

Order matters in two places. BAR0 counters are read exactly, so nothing else may touch BAR0
between a check's two readings. INTx goes last: once QEMU's vfio-pci has delivered an INTx it
turns BAR mmaps off until a timer on the virtual clock re-enables them, and that clock does
not run in a stopped (`-S`) machine.
"""

from __future__ import annotations

from harness.nested.checks import Results
from harness.nested.scenario import Scenario
from harness.nested.step1_qemu import (
    check_ram_is_dma_mapped,
    check_trace_device,
    check_trace_irqs,
    check_trace_regions,
    check_vfio_files,
)
from harness.nested.step2_pci import (
    check_bars,
    check_enable,
    check_found,
    check_identity,
    check_msi_capability,
    check_qemu_pci_view,
)
from harness.nested.step3_bars import (
    check_bar0_reaches_driver,
    check_bar0_registers,
    check_bar2_mmap_is_direct,
    check_bar2_trap_counts,
    check_trace_traps,
)
from harness.nested.step4_dma import (
    check_dma_pin,
    check_dma_rw,
    check_mmap_writes_reach_device,
    check_unmap_unpins,
)
from harness.nested.step5_irqs import check_error_irq, check_intx, check_msi


def run_steps(s: Scenario) -> Results:
    results = Results()
    run = results.run
    trace = s.qemu.trace
    run("1.vfio_fds", lambda: check_vfio_files(s.qemu, s.group))
    run("1.device_info", lambda: check_trace_device(trace(), s.uuid))
    run("1.region_info", lambda: check_trace_regions(trace(), s.mem_size))
    run("1.irq_info", lambda: check_trace_irqs(trace()))
    run("1.dma_map", lambda: check_ram_is_dma_mapped(s))

    run("2.found", lambda: check_found(s))
    run("2.identity", lambda: check_identity(s), ["2.found"])
    run("2.bars", lambda: check_bars(s), ["2.found"])
    run("2.msi_capability", lambda: check_msi_capability(s), ["2.found"])
    run("2.qemu_view", lambda: check_qemu_pci_view(s), ["2.found"])
    run("2.enable", lambda: check_enable(s), ["2.found"])

    ready = ["2.found", "2.enable"]
    run("3.bar0_registers", lambda: check_bar0_registers(s), ready)
    run("3.bar0_reaches_driver", lambda: check_bar0_reaches_driver(s), ready)
    run("3.bar2_mmap_direct", lambda: check_bar2_mmap_is_direct(s), ready)
    run("3.bar2_trapped_counted", lambda: check_bar2_trap_counts(s), ready)
    run("3.qemu_traps", lambda: check_trace_traps(s), ["3.bar2_trapped_counted"])

    registers = [*ready, "3.bar0_registers"]
    run("4.dma_pin", lambda: check_dma_pin(s), [*registers, "1.dma_map"])
    run("4.dma_vfio_dma_rw", lambda: check_dma_rw(s), [*registers, "1.dma_map"])
    run("4.mmap_is_device_memory", lambda: check_mmap_writes_reach_device(s), registers)
    run("4.unmap_unpins", lambda: check_unmap_unpins(s), registers)

    run("5.msi", lambda: check_msi(s), registers)
    run("5.intx", lambda: check_intx(s), registers)
    if s.machine.may_stop:
        run("5.err_irq", lambda: check_error_irq(s), registers)
    return results
