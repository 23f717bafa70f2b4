# SPDX-License-Identifier: MIT
"""Step 5: the DMA completion interrupt reaches the guest, as MSI (QEMU writes the message
into guest memory) and as INTx (an IOAPIC input rises, or L2's handler runs), through the
eventfds QEMU set with SET_IRQS; and the ERR interrupt makes QEMU stop the VM.
"""

from __future__ import annotations

import time

from harness.core.checks import CheckError, equal, expect
from harness.nested import pci
from harness.nested.scenario import Scenario, dma_ok
from harness.nested.trace import covered, mapped_ranges, trace_lines
from harness.refdev import registers as r

MSI_DATA = 0x4A5B  # what the device's MSI message writes; checked in guest RAM

SENTINEL = 0x5EE1DEAD

IRQ_WAIT_S = 10.0

QUIET_WAIT_S = 1.0

# Errnos a DMA from an unmapped IOVA may report (type1: EINVAL; iommufd: ENOENT; EFAULT).
UNMAPPED_ERRNOS = (14, 22, 2)


def clear_irqs(s: Scenario) -> None:
    s.r.write(r.REG_IRQ_MASK, 0)
    s.r.write(r.REG_IRQ_STATUS, r.IRQ_ALL)


def msi_configure(s: Scenario, target: int, enable: bool) -> None:
    cap = r.PCI_MSI_CAP_OFFSET
    s.cfg_write(cap + pci.MSI_ADDRESS_LO, 4, target & 0xFFFF_FFFF)
    s.cfg_write(cap + pci.MSI_ADDRESS_HI, 4, target >> 32)
    s.cfg_write(cap + pci.MSI_DATA_64, 2, MSI_DATA)
    flags = s.cfg_read(cap + pci.MSI_FLAGS, 2)
    flags = flags | pci.MSI_FLAGS_ENABLE if enable else flags & ~pci.MSI_FLAGS_ENABLE
    s.cfg_write(cap + pci.MSI_FLAGS, 2, flags)


def wait_ram(s: Scenario, address: int, wanted: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = int.from_bytes(s.machine.mem_read(address, 4), "little")
        if value == wanted or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _small_copy(s: Scenario) -> None:
    dma_ok(
        s.r, s.area(9), 0x9000, 64, r.DMA_TO_DEVICE | r.DMA_METHOD_RW, "copy raising the interrupt"
    )


def check_msi(s: Scenario) -> None:
    """MSI at a guest RAM address: QEMU's msi_notify writes the message into the bus-master
    address space, so the guest finds MSI_DATA there once the device signalled completion.
    MSI is turned off again however this ends, so that the INTx check still runs."""
    target = s.area(10) + 16  # 4-aligned: area() is 16 below a page boundary
    s.machine.mem_write(target, SENTINEL.to_bytes(4, "little"))
    clear_irqs(s)
    msi_configure(s, target, enable=True)
    try:
        _msi_fires(s, target)
    finally:
        clear_irqs(s)
        msi_configure(s, target, enable=False)


def _msi_fires(s: Scenario, target: int) -> None:
    flags = s.cfg_read(r.PCI_MSI_CAP_OFFSET + pci.MSI_FLAGS, 2)
    expect(flags & pci.MSI_FLAGS_ENABLE != 0, f"MSI enable did not stick: control {flags:#x}")
    mark = s.machine.intx_mark(s.dev)
    _small_copy(s)  # DMA_DONE masked: no message may arrive
    value = wait_ram(s, target, MSI_DATA, QUIET_WAIT_S)
    equal(value, SENTINEL, "MSI target after a completion with DMA_DONE masked in IRQ_MASK")
    s.r.write(r.REG_IRQ_STATUS, r.IRQ_ALL)
    s.r.write(r.REG_IRQ_MASK, r.IRQ_DMA_DONE)
    _small_copy(s)
    value = wait_ram(s, target, MSI_DATA, IRQ_WAIT_S)
    trace = s.qemu.trace()
    expect(bool(trace_lines(trace, "vfio_msi_enable")), "QEMU never enabled MSI through SET_IRQS")
    signalled = any(f"{target:#x}" in line for line in trace_lines(trace, "vfio_msi_interrupt"))
    if value != MSI_DATA:
        raise CheckError(
            f"MSI message in guest RAM at {target:#x} {IRQ_WAIT_S:.0f} s after the DMA_DONE "
            f"interrupt: got {value:#x}, expected {MSI_DATA:#x}; {_msi_diagnosis(s, signalled)}"
        )
    status = s.r.read(r.REG_IRQ_STATUS)
    expect(status & r.IRQ_DMA_DONE != 0, f"IRQ_STATUS {status:#x} lacks DMA_DONE after the copy")
    delivered = s.machine.intx_delivered(s.dev, mark, 0)
    expect(not delivered, f"INTx fired while MSI was enabled: {delivered}")


def _msi_diagnosis(s: Scenario, signalled: bool) -> str:
    """Where an MSI that did not land was lost: before QEMU, or in QEMU's write."""
    if not signalled:
        return "QEMU never got the device's MSI eventfd (no vfio_msi_interrupt to that address)"
    command = s.cfg_read(pci.COMMAND, 2)
    master = "on" if command & pci.COMMAND_MASTER else "OFF"
    return (
        "QEMU got the device's eventfd (vfio_msi_interrupt) but its write did not land; "
        f"command register {command:#06x}, bus mastering {master} (msi_notify writes through "
        "the bus-master address space)"
    )


def check_intx(s: Scenario) -> None:
    flags = s.cfg_read(r.PCI_MSI_CAP_OFFSET + pci.MSI_FLAGS, 2)
    expect(flags & pci.MSI_FLAGS_ENABLE == 0, "MSI still enabled: INTx needs it off")
    clear_irqs(s)
    mark = s.machine.intx_mark(s.dev)
    _small_copy(s)  # DMA_DONE masked: the line must stay low
    quiet = s.machine.intx_delivered(s.dev, mark, QUIET_WAIT_S)
    expect(not quiet, f"INTx fired with DMA_DONE masked in IRQ_MASK: {quiet}")
    s.r.write(r.REG_IRQ_STATUS, r.IRQ_ALL)
    mark = s.machine.intx_mark(s.dev)
    s.r.write(r.REG_IRQ_MASK, r.IRQ_DMA_DONE)
    _small_copy(s)
    delivered = s.machine.intx_delivered(s.dev, mark, IRQ_WAIT_S)
    expect(
        bool(delivered),
        f"no INTx reached the {s.machine.name} machine within {IRQ_WAIT_S:.0f} s of the DMA_DONE "
        "interrupt (device -> INTx eventfd -> QEMU vfio-pci -> PCI INTA -> IOAPIC)",
    )
    status = s.r.read(r.REG_IRQ_STATUS)
    if s.machine.intx_acked_by_guest:
        equal(status & r.IRQ_DMA_DONE, 0, "IRQ_STATUS after the guest's INTx handler acknowledged")
    else:
        expect(status & r.IRQ_DMA_DONE != 0, f"IRQ_STATUS {status:#x} lacks DMA_DONE with INTx up")
        s.r.write(r.REG_IRQ_STATUS, r.IRQ_DMA_DONE)  # acknowledge, as a handler would
    problem = s.machine.intx_settled(s.dev, mark, IRQ_WAIT_S)
    expect(problem is None, f"INTx did not settle: {problem}")
    trace = s.qemu.trace()
    expect(
        bool(trace_lines(trace, "vfio_intx_interrupt")), "QEMU's trace has no vfio_intx_interrupt"
    )
    clear_irqs(s)


def check_error_irq(s: Scenario) -> None:
    """A DMA from an IOVA nobody mapped fails, and the device signals its ERR interrupt:
    QEMU's vfio-pci treats that as an unrecoverable device error and stops the VM. Run
    last, and only where a stopped machine ends nothing else (qtest)."""
    unmapped = 0xF000_0000  # PCI hole, no RAM and no BAR there: never DMA-mapped
    expect(not covered(mapped_ranges(s.qemu.trace()), unmapped, 16), f"{unmapped:#x} is mapped")
    status, error = s.r.dma(unmapped, 0x8000, 16, r.DMA_TO_DEVICE)
    expect(
        status == r.DMA_STATUS_ERROR and error in UNMAPPED_ERRNOS,
        f"a DMA from the unmapped IOVA {unmapped:#x} gave DMA_STATUS {status:#x} DMA_ERROR "
        f"{error}; expected an error (pinning an IOVA the container does not map)",
    )
    deadline = time.monotonic() + IRQ_WAIT_S
    while "vfio_err_notifier_handler" not in s.qemu.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    expect(
        "vfio_err_notifier_handler" in s.qemu.stderr(),
        "QEMU did not report the device's ERR interrupt (no vfio_err_notifier_handler message)",
    )
    # A running VM would now be stopped (run state "internal-error"); a -S one stays in
    # "prelaunch", which vm_stop() leaves alone.
    expect(s.qemu.run_state() != "running", "QEMU kept running after the device error")
