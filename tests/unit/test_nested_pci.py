# SPDX-License-Identifier: MIT
"""harness.nested.pci on a fake config space with real BAR and capability semantics."""

from __future__ import annotations

import pytest

from harness.nested import pci
from harness.nested.pci import Bar, Bdf, Window


class FakeFunction:
    """One function's config space: BARs answer all-ones writes with their size mask."""

    def __init__(self, vendor: int, device: int, bars: dict[int, tuple[int, int]]) -> None:
        self.space = bytearray(256)
        self.space[0:4] = (device << 16 | vendor).to_bytes(4, "little")
        self.bars = bars  # dword offset -> (writable address bits, read-only flag bits)
        for offset, (_, flags) in bars.items():
            self.space[offset : offset + 4] = flags.to_bytes(4, "little")

    def read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.space[offset : offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        base = offset & ~3
        if 0x10 <= base < 0x28 and base not in self.bars:
            return  # an unimplemented BAR is read-only zero
        if base in self.bars and size == 4:
            writable, flags = self.bars[base]
            value = value & writable | flags
        self.space[offset : offset + size] = value.to_bytes(size, "little")


class FakeBus:
    def __init__(self, functions: dict[Bdf, FakeFunction]) -> None:
        self.functions = functions
        self.writes: list[tuple[Bdf, int, int, int]] = []

    def config_read(self, bdf: Bdf, offset: int, size: int) -> int:
        fn = self.functions.get(bdf)
        return fn.read(offset, size) if fn else (1 << 8 * size) - 1

    def config_write(self, bdf: Bdf, offset: int, size: int, value: int) -> None:
        self.writes.append((bdf, offset, size, value))
        if bdf in self.functions:
            self.functions[bdf].write(offset, size, value)


def our_device() -> FakeFunction:
    # BAR0: 32-bit 4 KiB; BAR2/3: 64-bit prefetchable 1 MiB; an MSI capability at 0x40
    # behind a vendor capability at 0x50.
    bars = {0x10: (0xFFFF_F000, 0), 0x18: (0xFFF0_0000, 0xC), 0x1C: (0xFFFF_FFFF, 0)}
    fn = FakeFunction(0x1DE5, 0x0001, bars)
    fn.space[pci.STATUS] = pci.STATUS_CAP_LIST
    fn.space[pci.CAPABILITY_LIST] = 0x50
    fn.space[0x50:0x52] = bytes([0x09, 0x40])
    fn.space[0x40:0x42] = bytes([pci.CAP_ID_MSI, 0x00])
    return fn


def test_config_address_is_mechanism_one() -> None:
    assert pci.config_address(Bdf(0, 2, 0), 0x3D) == 0x8000_103C
    assert pci.config_address(Bdf(1, 31, 7), 0) == 0x8001_FF00
    with pytest.raises(ValueError):
        pci.config_address(Bdf(0, 32, 0), 0)
    with pytest.raises(ValueError):
        pci.config_address(Bdf(0, 0, 0), 256)


def test_bar_size_from_masks() -> None:
    assert pci.bar_size(0xFFFF_F000, 32) == 4096
    assert pci.bar_size(0xFFFF_FFFF_FFF0_000C, 64) == 1 << 20
    assert pci.bar_size(0xFFFF_FF01, 32) == 256  # I/O BAR: two flag bits
    assert pci.bar_size(0, 32) == 0


def test_sizing_finds_both_bars_and_restores_the_device() -> None:
    fn = our_device()
    fn.space[pci.COMMAND] = pci.COMMAND_MEMORY
    bus = FakeBus({Bdf(0, 1, 0): fn})
    bars = pci.size_bars(bus, Bdf(0, 1, 0))
    assert bars == [Bar(0, 4096, False, False, False), Bar(2, 1 << 20, True, True, False)]
    # Decode was off while sizing, and is back on.
    commands = [value for _, offset, _, value in bus.writes if offset == pci.COMMAND]
    assert commands == [0, pci.COMMAND_MEMORY]


def test_assignment_aligns_each_bar_to_its_size_largest_first() -> None:
    fn = our_device()
    bdf = Bdf(0, 1, 0)
    bus = FakeBus({bdf: fn})
    window = Window(0xC000_0100, 0xD000_0000)
    placed = pci.assign_bars(bus, bdf, pci.size_bars(bus, bdf), window)
    assert [(b.index, hex(b.address)) for b in placed] == [(0, "0xc0200000"), (2, "0xc0100000")]
    for bar in placed:
        assert pci.read_bar_address(bus, bdf, bar) == bar.address
    with pytest.raises(ValueError, match="no room"):
        Window(0x1000, 0x2000).take(0x2000)


def test_scan_and_capabilities() -> None:
    bus = FakeBus({Bdf(0, 0, 0): FakeFunction(0x8086, 0x29C0, {}), Bdf(0, 3, 0): our_device()})
    assert pci.scan_bus0(bus) == [(Bdf(0, 0, 0), 0x8086, 0x29C0), (Bdf(0, 3, 0), 0x1DE5, 1)]
    assert pci.find_function(bus, 0x1DE5, 0x0001) == Bdf(0, 3, 0)
    assert pci.find_function(bus, 0x1AF4, 0x1110) is None
    assert pci.find_capability(bus, Bdf(0, 3, 0), pci.CAP_ID_MSI) == 0x40
    assert pci.find_capability(bus, Bdf(0, 3, 0), 0x10) is None
    assert pci.find_capability(bus, Bdf(0, 0, 0), pci.CAP_ID_MSI) is None  # no list


def test_a_capability_loop_ends() -> None:
    fn = our_device()
    fn.space[0x41] = 0x50  # MSI -> vendor -> MSI ...
    bus = FakeBus({Bdf(0, 1, 0): fn})
    assert pci.find_capability(bus, Bdf(0, 1, 0), 0x10) is None
