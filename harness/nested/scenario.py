# SPDX-License-Identifier: MIT
"""What every step shares: the machine, QEMU's view of itself, the device found, and its
BAR0 registers with the DMA engine's programming sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from harness.core.checks import PAGE, expect
from harness.nested.machine import Machine, Probed
from harness.nested.qemu import VFIO_DEVICE_ID
from harness.refdev import registers as r


class QemuView(Protocol):
    """What L1's QEMU says about itself."""

    def trace(self) -> str: ...

    def open_files(self) -> list[str]: ...

    def query_pci(self) -> list[dict[str, Any]]: ...

    def run_state(self) -> str: ...  # QMP query-status "status"

    def stderr(self) -> str: ...


class Regs:
    """BAR0 registers at their bus address."""

    def __init__(self, machine: Machine, base: int) -> None:
        self.machine = machine
        self.base = base

    def read(self, offset: int) -> int:
        return self.machine.mmio_read(self.base + offset, 4)

    def write(self, offset: int, value: int) -> None:
        self.machine.mmio_write(self.base + offset, 4, value)

    def write64(self, offset: int, value: int) -> None:
        self.machine.mmio_write(self.base + offset, 8, value)

    def counters(self) -> dict[str, int]:
        names = ("PINNED_PAGES", "TOTAL_PINS", "TOTAL_UNPINS", "DMA_UNMAP_CALLS", "DMA_DONE_COUNT")
        return {name: self.read(getattr(r, f"REG_{name}")) for name in names}

    def dma(self, src: int, dst: int, length: int, command: int) -> tuple[int, int]:
        """Program and start a copy; (DMA_STATUS, DMA_ERROR) once it finished (synchronous)."""
        self.write64(r.REG_DMA_SRC, src)
        self.write64(r.REG_DMA_DST, dst)
        self.write(r.REG_DMA_LEN, length)
        self.write(r.REG_DMA_CMD, command)
        return self.read(r.REG_DMA_STATUS), self.read(r.REG_DMA_ERROR)


def dma_ok(regs: Regs, src: int, dst: int, length: int, command: int, what: str) -> None:
    status, error = regs.dma(src, dst, length, command)
    expect(
        status == r.DMA_STATUS_DONE and error == 0,
        f"{what}: DMA_STATUS {status:#x}, DMA_ERROR {error} (src {src:#x}, dst {dst:#x}, "
        f"len {length}, cmd {command:#x})",
    )


@dataclass
class Scenario:
    """Everything the checks share: the machine, QEMU's view, and what was found."""

    machine: Machine
    qemu: QemuView
    uuid: str
    group: str
    mem_size: int
    dma_length: int  # bytes per DMA check: qtest copies several pages, L2 a few hundred bytes
    qdev_id: str = VFIO_DEVICE_ID  # our vfio-pci device's id in QEMU (libvirt: its alias)
    device: Probed | None = None
    ivshmem: Probed | None = None
    regs: Regs | None = None

    @property
    def dev(self) -> Probed:
        assert self.device is not None
        return self.device

    @property
    def r(self) -> Regs:
        assert self.regs is not None
        return self.regs

    def cfg_read(self, offset: int, size: int) -> int:
        return self.machine.config_read(self.dev.bdf, offset, size)

    def cfg_write(self, offset: int, size: int, value: int) -> None:
        self.machine.config_write(self.dev.bdf, offset, size, value)

    @property
    def bar2(self) -> int:
        return self.dev.bar(2).address

    def area(self, index: int) -> int:
        """Guest-physical address of the index-th DMA buffer: each in its own 16-page slot,
        starting 16 bytes before a page boundary so every copy crosses pages."""
        start, size = self.machine.dma_area()
        slot = start + index * 16 * PAGE
        expect(slot + 16 * PAGE <= start + size, f"DMA area too small for buffer {index}")
        return slot + PAGE - 16
