# SPDX-License-Identifier: MIT
"""The machine L1's QEMU presents, as a guest driver sees it: one interface, two backends.

steps.py drives the device only through `Machine`: config space of a PCI function, MMIO at
bus addresses, guest-physical RAM, and INTx delivery. `QtestMachine` implements it over
qtest (the driver is us, poking the machine directly), `ShellMachine` over an L2 shell
(the driver is L2 userspace: sysfs, devmem, and a small L2 module for INTx).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.nested.pci import Bar, Bdf


@dataclass(frozen=True)
class Probed:
    """A PCI function found on the machine, with its memory BARs at known addresses."""

    bdf: Bdf
    vendor: int
    device: int
    bars: dict[int, Bar]  # by BAR index

    def bar(self, index: int) -> Bar:
        try:
            return self.bars[index]
        except KeyError:
            raise LookupError(f"{self.bdf} has no BAR{index} (BARs: {sorted(self.bars)})") from None


class Machine(Protocol):
    name: str  # "qtest" or "l2", in messages
    # Whether a check may stop the machine for good (QEMU stops the VM on a device error):
    # only where nothing runs in it that the rest of the run would need.
    may_stop: bool
    # Whether the guest's own interrupt handler acknowledges the device (L2's driver reads
    # and clears IRQ_STATUS), or the step code must (qtest: nobody runs in the machine).
    intx_acked_by_guest: bool

    def probe(self, vendor: int, device: int) -> Probed | None:
        """Find the function and make its BARs addressable (assign them if nobody did)."""
        ...

    def config_read(self, bdf: Bdf, offset: int, size: int) -> int: ...

    def config_write(self, bdf: Bdf, offset: int, size: int, value: int) -> None: ...

    def mmio_read(self, address: int, size: int) -> int: ...

    def mmio_write(self, address: int, size: int, value: int) -> None: ...

    # Blocks of guest-physical memory, RAM or MMIO (a BAR's bytes in the accesses the
    # backend finds cheapest): for data, where mmio_read/mmio_write are for registers.
    def mem_read(self, address: int, length: int) -> bytes: ...

    def mem_write(self, address: int, data: bytes) -> None: ...

    def dma_area(self) -> tuple[int, int]:
        """(guest-physical start, size) of RAM the driver may use for DMA buffers and as an
        MSI target: nothing else in the machine touches it."""
        ...

    def intx_mark(self, device: Probed) -> int:
        """A mark to count INTx deliveries of `device` from."""
        ...

    def intx_delivered(self, device: Probed, mark: int, timeout: float) -> list[str]:
        """INTx deliveries since `mark` (descriptions), waiting up to `timeout` for one."""
        ...

    def intx_settled(self, device: Probed, mark: int, timeout: float) -> str | None:
        """After the device was acknowledged: None if its INTx went quiet (lowered, no
        further deliveries), else what is wrong."""
        ...
