# SPDX-License-Identifier: MIT
"""Standard PCI config-space fields and BAR sizing, through a VFIO config region (index 7)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.uapi.region import Region

VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
REVISION_ID = 0x08
CLASS_REVISION = 0x08  # dword: class code << 8 | revision
HEADER_TYPE = 0x0E
BAR0 = 0x10
BAR2 = 0x18
SUBSYSTEM_VENDOR_ID = 0x2C
SUBSYSTEM_ID = 0x2E
CAPABILITY_LIST = 0x34
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D

STATUS_INTERRUPT = 0x08  # INTx asserted
STATUS_CAP_LIST = 0x10
BAR_SPACE_IO = 0x1
BAR_MEM_TYPE_MASK = 0x6
BAR_MEM_TYPE_64 = 0x4
BAR_PREFETCH = 0x8
_BAR_FLAGS = 0xF
_ALL_ONES = 0xFFFFFFFF


@dataclass(frozen=True)
class BarProbe:
    """What sizing a memory BAR read back: all ones written, the address mask returned."""

    original: int  # the BAR's value before sizing (64 bits for a 64-bit BAR), restored after
    mask: int  # the value read back after writing all ones (both dwords for a 64-bit BAR)
    bits: int  # 32 or 64

    @property
    def flags(self) -> int:
        return self.mask & _BAR_FLAGS

    @property
    def is_64bit(self) -> bool:
        return self.bits == 64

    @property
    def prefetchable(self) -> bool:
        return bool(self.mask & BAR_PREFETCH)

    @property
    def size(self) -> int:
        """0 for an unimplemented BAR (reads back 0)."""
        address_bits = self.mask & ~_BAR_FLAGS & ((1 << self.bits) - 1)
        if address_bits == 0:
            return 0
        return (~address_bits & ((1 << self.bits) - 1)) + 1


def probe_memory_bar(config: Region, offset: int) -> BarProbe:
    """Size the memory BAR at `offset` the way firmware does, and put its value back."""
    original, mask = _size_dword(config, offset)
    if mask & BAR_SPACE_IO or (mask & BAR_MEM_TYPE_MASK) != BAR_MEM_TYPE_64:
        return BarProbe(original, mask, 32)
    high_original, high_mask = _size_dword(config, offset + 4)
    return BarProbe(high_original << 32 | original, high_mask << 32 | mask, 64)


def _size_dword(config: Region, offset: int) -> tuple[int, int]:
    original = config.read_int(offset, 4)
    config.write_int(offset, 4, _ALL_ONES)
    mask = config.read_int(offset, 4)
    config.write_int(offset, 4, original)
    return original, mask
