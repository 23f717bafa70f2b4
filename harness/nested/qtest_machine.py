# SPDX-License-Identifier: MIT
"""`Machine` over qtest: we are the guest driver, poking L1's stopped machine directly.

Config space through mechanism #1 (0xcf8 address, 0xcfc..0xcff data), exactly the accesses a
guest kernel's PCI code makes; MMIO and RAM through qtest's memory commands, which go through
QEMU's memory map like a CPU access (a trapped BAR reaches vfio-pci's region ops, an
mmap-ed one is plain host memory). No firmware ran (`-S`), so BARs start unassigned: probe()
sizes and places them, as firmware would. INTx is watched at the IOAPIC's inputs
(`irq_intercept_in ioapic`): QEMU reports each level change of a GSI.
"""

from __future__ import annotations

from harness.nested.machine import Probed
from harness.nested.pci import (
    CONFIG_ADDRESS_PORT,
    CONFIG_DATA_PORT,
    Bdf,
    Window,
    assign_bars,
    config_address,
    find_function,
    size_bars,
)
from harness.qemu.qtest import IrqEvent, QtestClient

# Where probe() places BARs: above q35's MMCONFIG window (0xb0000000, 256 MiB), below the
# IOAPIC/HPET/LAPIC area at 0xfec00000. Everything not RAM is PCI space on q35.
BAR_WINDOW = (0xC000_0000, 0xFC00_0000)
_WIDTH = {1: "b", 2: "w", 4: "l", 8: "q"}


def _width(size: int) -> str:
    try:
        return _WIDTH[size]
    except KeyError:
        raise ValueError(f"access size {size} is not 1, 2, 4 or 8") from None


class QtestMachine:
    name = "qtest"
    intx_acked_by_guest = False
    may_stop = True  # nothing runs in a -S machine

    def __init__(self, qtest: QtestClient, memory_bytes: int) -> None:
        self.qtest = qtest
        self.memory_bytes = memory_bytes
        self.window = Window(*BAR_WINDOW)
        self.qtest.irq_intercept_in("ioapic")

    # -- config space ------------------------------------------------------------------

    def config_read(self, bdf: Bdf, offset: int, size: int) -> int:
        _check_aligned(offset, size)
        self.qtest.outl(CONFIG_ADDRESS_PORT, config_address(bdf, offset))
        return self.qtest.in_(_width(size), CONFIG_DATA_PORT + (offset & 3))

    def config_write(self, bdf: Bdf, offset: int, size: int, value: int) -> None:
        _check_aligned(offset, size)
        self.qtest.outl(CONFIG_ADDRESS_PORT, config_address(bdf, offset))
        self.qtest.out(_width(size), CONFIG_DATA_PORT + (offset & 3), value)

    def probe(self, vendor: int, device: int) -> Probed | None:
        bdf = find_function(self, vendor, device)
        if bdf is None:
            return None
        bars = assign_bars(self, bdf, size_bars(self, bdf), self.window)
        return Probed(bdf, vendor, device, {bar.index: bar for bar in bars})

    # -- memory ------------------------------------------------------------------------

    def mmio_read(self, address: int, size: int) -> int:
        return self.qtest.read_int(_width(size), address)

    def mmio_write(self, address: int, size: int, value: int) -> None:
        self.qtest.write_int(_width(size), address, value)

    def mem_read(self, address: int, length: int) -> bytes:
        return self.qtest.read(address, length)

    def mem_write(self, address: int, data: bytes) -> None:
        self.qtest.write(address, data)

    def dma_area(self) -> tuple[int, int]:
        # The upper half of RAM: no guest code ever ran, so all of RAM is free; stay clear of
        # the low 1 MiB anyway (firmware tables QEMU itself wrote).
        half = self.memory_bytes // 2
        return half, half

    # -- INTx at the IOAPIC ------------------------------------------------------------

    def intx_mark(self, device: Probed) -> int:
        self.qtest.poll()
        return len(self.qtest.irq_events)

    def intx_delivered(self, device: Probed, mark: int, timeout: float) -> list[str]:
        self.qtest.wait_irq(_pci_intx_raised, mark, timeout)
        return [_describe(e) for e in self.qtest.irq_events[mark:] if _pci_intx_raised(e)]

    def intx_settled(self, device: Probed, mark: int, timeout: float) -> str | None:
        raised = [e for e in self.qtest.irq_events[mark:] if _pci_intx_raised(e)]
        if not raised:
            return "no INTx was raised to settle"
        line = raised[-1].line
        since = self.qtest.irq_events.index(raised[-1]) + 1
        lowered = self.qtest.wait_irq(lambda e: e.line == line and not e.raised, since, timeout)
        if lowered is None:
            return (
                f"IOAPIC input {line} stayed raised {timeout:.0f} s after the device was "
                "acknowledged (QEMU's vfio-pci should lower it on the next BAR access)"
            )
        again = [e for e in self.qtest.irq_events[since:] if e.raised and e.line == line]
        if again:
            return f"IOAPIC input {line} was raised again after the acknowledgement"
        return None


# q35 routes PCI INTx through PIRQ A-H to IOAPIC inputs 16-23. Inputs 0-15 are the ISA
# interrupts, which a running machine raises too (its PIT, about 36 times a second on input 0
# as qtest sees it).
FIRST_PCI_GSI = 16


def _pci_intx_raised(event: IrqEvent) -> bool:
    return event.raised and event.line >= FIRST_PCI_GSI


def _describe(event: IrqEvent) -> str:
    return f"IOAPIC input (GSI) {event.line} raised"


def _check_aligned(offset: int, size: int) -> None:
    if size not in (1, 2, 4) or offset % size:
        raise ValueError(f"config access of {size} bytes at {offset:#x}: must be 1/2/4, aligned")
