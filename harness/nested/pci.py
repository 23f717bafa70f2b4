# SPDX-License-Identifier: MIT
"""What a guest's PCI code does before a driver probes: enumerate, size and assign BARs.

Written against `ConfigAccess` (read/write a function's config space), so the logic runs on
the qtest backend's configuration mechanism #1 (ports 0xcf8/0xcfc) and is unit-tested on a
fake. Only bus 0 is scanned: L1's machine is a q35 with every device on its root bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

VENDOR_ID = 0x00
DEVICE_ID = 0x02
COMMAND = 0x04
STATUS = 0x06
HEADER_TYPE = 0x0E
BAR0 = 0x10
CAPABILITY_LIST = 0x34
INTERRUPT_LINE = 0x3C
INTERRUPT_PIN = 0x3D

COMMAND_MEMORY = 0x2
COMMAND_MASTER = 0x4
COMMAND_INTX_DISABLE = 0x400
STATUS_CAP_LIST = 0x10
BAR_IO = 0x1
BAR_TYPE_64 = 0x4
BAR_PREFETCH = 0x8
HEADER_MULTIFUNCTION = 0x80

CAP_ID_MSI = 0x05
MSI_FLAGS = 0x2  # control word, from the capability's start
MSI_FLAGS_ENABLE = 0x1
MSI_FLAGS_64BIT = 0x80
MSI_ADDRESS_LO = 0x4
MSI_ADDRESS_HI = 0x8
MSI_DATA_64 = 0xC

CONFIG_ADDRESS_PORT = 0xCF8
CONFIG_DATA_PORT = 0xCFC


@dataclass(frozen=True, order=True)
class Bdf:
    bus: int
    device: int
    function: int

    def __str__(self) -> str:
        return f"0000:{self.bus:02x}:{self.device:02x}.{self.function}"


def config_address(bdf: Bdf, offset: int) -> int:
    """The dword written to 0xcf8 for `offset` (mechanism #1: enable bit, bus, dev, fn, reg)."""
    if not (0 <= bdf.bus < 256 and 0 <= bdf.device < 32 and 0 <= bdf.function < 8):
        raise ValueError(f"bad PCI address {bdf}")
    if not 0 <= offset < 256:
        raise ValueError(f"config offset {offset:#x} outside the 256-byte header space")
    return 0x8000_0000 | bdf.bus << 16 | bdf.device << 11 | bdf.function << 8 | (offset & 0xFC)


class ConfigAccess(Protocol):
    def config_read(self, bdf: Bdf, offset: int, size: int) -> int: ...

    def config_write(self, bdf: Bdf, offset: int, size: int, value: int) -> None: ...


@dataclass(frozen=True)
class Bar:
    index: int
    size: int
    is_64bit: bool
    prefetchable: bool
    io: bool
    address: int = 0  # assigned (or found) bus address; 0 = none yet

    @property
    def end(self) -> int:
        return self.address + self.size


def scan_bus0(config: ConfigAccess) -> list[tuple[Bdf, int, int]]:
    """(bdf, vendor, device) of every function on bus 0."""
    found = []
    for device in range(32):
        first = Bdf(0, device, 0)
        vendor = config.config_read(first, VENDOR_ID, 2)
        if vendor == 0xFFFF:
            continue
        multi = config.config_read(first, HEADER_TYPE, 1) & HEADER_MULTIFUNCTION
        for function in range(8 if multi else 1):
            bdf = Bdf(0, device, function)
            ids = config.config_read(bdf, VENDOR_ID, 4)
            if ids & 0xFFFF != 0xFFFF:
                found.append((bdf, ids & 0xFFFF, ids >> 16))
    return found


def find_function(config: ConfigAccess, vendor: int, device: int) -> Bdf | None:
    for bdf, ven, dev in scan_bus0(config):
        if (ven, dev) == (vendor, device):
            return bdf
    return None


def size_bars(config: ConfigAccess, bdf: Bdf) -> list[Bar]:
    """Every implemented BAR: write all ones, read back the mask, restore (decode off)."""
    command = config.config_read(bdf, COMMAND, 2)
    # Sizing moves the BAR over the whole address space for a moment: decode off meanwhile.
    config.config_write(bdf, COMMAND, 2, command & ~(COMMAND_MEMORY | 0x1))
    bars = []
    index = 0
    while index < 6:
        offset = BAR0 + 4 * index
        original = config.config_read(bdf, offset, 4)
        config.config_write(bdf, offset, 4, 0xFFFF_FFFF)
        mask = config.config_read(bdf, offset, 4)
        config.config_write(bdf, offset, 4, original)
        is_64 = not (mask & BAR_IO) and (mask & 0x6) == BAR_TYPE_64
        width = 32
        if is_64:
            high_original = config.config_read(bdf, offset + 4, 4)
            config.config_write(bdf, offset + 4, 4, 0xFFFF_FFFF)
            mask |= config.config_read(bdf, offset + 4, 4) << 32
            config.config_write(bdf, offset + 4, 4, high_original)
            width = 64
        size = bar_size(mask, width)
        if size:
            bars.append(
                Bar(
                    index,
                    size,
                    is_64,
                    bool(mask & BAR_PREFETCH and not mask & BAR_IO),
                    bool(mask & BAR_IO),
                )
            )
        index += 2 if is_64 else 1
    config.config_write(bdf, COMMAND, 2, command)
    return bars


def bar_size(mask: int, width: int) -> int:
    """The size a BAR's all-ones read-back encodes (0: not implemented)."""
    flags = 0x3 if mask & BAR_IO else 0xF
    address_bits = mask & ~flags & ((1 << width) - 1)
    if address_bits == 0:
        return 0
    return (~address_bits & ((1 << width) - 1)) + 1


@dataclass
class Window:
    """A range of bus addresses that BARs are placed in, bottom up, each aligned to its size."""

    start: int
    end: int

    def take(self, size: int) -> int:
        address = (self.start + size - 1) // size * size
        if address + size > self.end:
            raise ValueError(
                f"no room for a {size:#x}-byte BAR in [{self.start:#x}, {self.end:#x})"
            )
        self.start = address + size
        return address


def assign_bars(config: ConfigAccess, bdf: Bdf, bars: list[Bar], window: Window) -> list[Bar]:
    """Program each memory BAR with an address from `window` (largest first, as firmware
    does, to waste no alignment); returns the BARs with their addresses."""
    placed = {}
    for bar in sorted(bars, key=lambda b: b.size, reverse=True):
        if bar.io:
            raise ValueError(f"{bdf} BAR{bar.index} is an I/O BAR; only memory BARs are placed")
        address = window.take(bar.size)
        offset = BAR0 + 4 * bar.index
        config.config_write(bdf, offset, 4, address & 0xFFFF_FFFF)
        if bar.is_64bit:
            config.config_write(bdf, offset + 4, 4, address >> 32)
        placed[bar.index] = Bar(bar.index, bar.size, bar.is_64bit, bar.prefetchable, False, address)
    return [placed[bar.index] for bar in bars]


def read_bar_address(config: ConfigAccess, bdf: Bdf, bar: Bar) -> int:
    offset = BAR0 + 4 * bar.index
    low = config.config_read(bdf, offset, 4) & ~0xF
    high = config.config_read(bdf, offset + 4, 4) if bar.is_64bit else 0
    return high << 32 | low


def find_capability(config: ConfigAccess, bdf: Bdf, cap_id: int) -> int | None:
    """Offset of the first capability `cap_id` in the standard list, or None."""
    if not config.config_read(bdf, STATUS, 2) & STATUS_CAP_LIST:
        return None
    offset = config.config_read(bdf, CAPABILITY_LIST, 1) & 0xFC
    seen = set()
    while offset and offset not in seen:
        seen.add(offset)
        if config.config_read(bdf, offset, 1) == cap_id:
            return offset
        offset = config.config_read(bdf, offset + 1, 1) & 0xFC
    return None
