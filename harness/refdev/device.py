# SPDX-License-Identifier: MIT
"""The reference device driven through its VFIO regions: registers, device memory, DMA.

    with open_type1(mdev.iommu_group, mdev.uuid) as opened:
        dev = RefDevice(opened.device)
        dev.read32(REG_ID)
        result = dev.dma(iova, 0, 4096, Direction.TO_DEVICE, Method.PIN)
        result.check()                  # raises DmaError with the device's errno

Register accesses are single preads/pwrites of BAR0 (region 0, trapped); device memory is
BAR2 (region 2) through the fd. Nothing here caches a register: every read goes to the device.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from harness.refdev import registers as r
from harness.uapi.device import Device
from harness.uapi.errors import errno_name
from harness.uapi.raw import vfio as v
from harness.uapi.region import Region


class Direction(enum.IntEnum):
    TO_DEVICE = r.DMA_TO_DEVICE  # guest IOVA -> BAR2 offset
    FROM_DEVICE = r.DMA_FROM_DEVICE  # BAR2 offset -> guest IOVA
    GUEST_TO_GUEST = r.DMA_GUEST_TO_GUEST  # IOVA -> IOVA


class Method(enum.IntEnum):
    PIN = 0  # vfio_pin_pages + kmap
    RW = r.DMA_METHOD_RW  # vfio_dma_rw


def dma_command(direction: int, method: int = Method.PIN, keep_pinned: bool = False) -> int:
    """The DMA_CMD word. Plain ints pass through unchecked, so tests can send bad commands."""
    return direction | method | (r.DMA_KEEP_PINNED if keep_pinned else 0)


class DmaError(RuntimeError):
    """The device finished a copy with its error bit set; `errno` is its DMA_ERROR."""

    def __init__(self, what: str, result: DmaResult) -> None:
        super().__init__(
            f"{what}: the device reports DMA_STATUS={result.status:#x}, DMA_ERROR="
            f"{result.error} ({result.errno_name})"
        )
        self.result = result
        self.errno = result.error


@dataclass(frozen=True)
class DmaResult:
    status: int  # DMA_STATUS after the doorbell: DONE and/or ERROR bits
    error: int  # DMA_ERROR: 0 or a positive errno

    @property
    def done(self) -> bool:
        return bool(self.status & r.DMA_STATUS_DONE)

    @property
    def failed(self) -> bool:
        return bool(self.status & r.DMA_STATUS_ERROR)

    @property
    def ok(self) -> bool:
        return self.done and not self.failed and self.error == 0

    @property
    def errno_name(self) -> str:
        return errno_name(self.error) if self.error else "no error"

    def check(self, what: str = "DMA") -> DmaResult:
        """Self if the copy succeeded; else DmaError."""
        if not self.ok:
            raise DmaError(what, self)
        return self


@dataclass(frozen=True)
class Counters:
    """The DMA engine's counters, read one after another (the device is idle between calls)."""

    dma_done: int
    pinned_pages: int
    total_pins: int
    total_unpins: int
    dma_unmap_calls: int
    reset_count: int

    def minus(self, earlier: Counters) -> Counters:
        """What changed since `earlier` (pinned_pages may go down: it is a level, not a count)."""
        return Counters(
            self.dma_done - earlier.dma_done,
            self.pinned_pages - earlier.pinned_pages,
            self.total_pins - earlier.total_pins,
            self.total_unpins - earlier.total_unpins,
            self.dma_unmap_calls - earlier.dma_unmap_calls,
            self.reset_count - earlier.reset_count,
        )


class RefDevice:
    """An open vfio_harness_mdev device. It does not own `device`: close that as usual."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.bar0: Region = device.region(v.VFIO_PCI_BAR0_REGION_INDEX)
        self.mem: Region = device.region(v.VFIO_PCI_BAR2_REGION_INDEX)
        self.config: Region = device.region(v.VFIO_PCI_CONFIG_REGION_INDEX)

    # -- registers (BAR0) -----------------------------------------------------------------------

    def read32(self, offset: int) -> int:
        return self.bar0.read_int(offset, 4)

    def write32(self, offset: int, value: int) -> None:
        self.bar0.write_int(offset, 4, value)

    def read64(self, offset: int) -> int:
        return self.bar0.read_int(offset, 8)

    def write64(self, offset: int, value: int) -> None:
        self.bar0.write_int(offset, 8, value)

    def counters(self) -> Counters:
        return Counters(
            dma_done=self.read32(r.REG_DMA_DONE_COUNT),
            pinned_pages=self.read32(r.REG_PINNED_PAGES),
            total_pins=self.read32(r.REG_TOTAL_PINS),
            total_unpins=self.read32(r.REG_TOTAL_UNPINS),
            dma_unmap_calls=self.read32(r.REG_DMA_UNMAP_CALLS),
            reset_count=self.read32(r.REG_RESET_COUNT),
        )

    # -- DMA engine -----------------------------------------------------------------------------

    def program(self, src: int, dst: int, length: int) -> None:
        """Set a copy's source, destination and length; the DMA_CMD doorbell runs it."""
        self.write64(r.REG_DMA_SRC, src)
        self.write64(r.REG_DMA_DST, dst)
        self.write32(r.REG_DMA_LEN, length)

    def dma(
        self,
        src: int,
        dst: int,
        length: int,
        direction: int,
        method: int = Method.PIN,
        keep_pinned: bool = False,
    ) -> DmaResult:
        """Program one copy and ring the doorbell; the copy runs within the DMA_CMD write.

        `src`/`dst` are IOVAs or BAR2 offsets as `direction` says. A device-side failure is
        the returned result (see DmaResult.check); a refused register access raises VfioError.
        """
        self.program(src, dst, length)
        self.write32(r.REG_DMA_CMD, dma_command(direction, method, keep_pinned))
        return DmaResult(self.read32(r.REG_DMA_STATUS), self.read32(r.REG_DMA_ERROR))

    # -- device memory (BAR2) -------------------------------------------------------------------

    def mem_read(self, offset: int, size: int) -> bytes:
        return self.mem.read_exact(offset, size)

    def mem_write(self, offset: int, data: bytes) -> None:
        self.mem.write_exact(offset, data)
