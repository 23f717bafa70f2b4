# SPDX-License-Identifier: MIT
"""RefDevice's register protocol, over a file standing in for the device fd (no side effects:
what a DMA command writes is checked byte by byte; the real engine runs in tests/vm)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.refdev import registers as r
from harness.refdev.device import (
    Counters,
    Direction,
    DmaError,
    DmaResult,
    Method,
    RefDevice,
    dma_command,
)
from harness.refdev.pci_config import BarProbe, probe_memory_bar
from harness.uapi.device import Device
from harness.uapi.raw import vfio as v
from harness.uapi.region import Region, RegionInfo

REGION_STRIDE = 1 << 16  # region N lives at N * 64 KiB in the file


class FileDevice(Device):
    """A Device whose regions are slices of a plain file: pread/pwrite work, ioctls do not."""

    def region_info(self, index: int) -> RegionInfo:
        flags = v.VFIO_REGION_INFO_FLAG_READ | v.VFIO_REGION_INFO_FLAG_WRITE
        return RegionInfo(index, flags, REGION_STRIDE, index * REGION_STRIDE, (), None, None)


@pytest.fixture
def device(tmp_path: Path) -> Iterator[FileDevice]:
    path = tmp_path / "device"
    path.write_bytes(bytes(REGION_STRIDE * 8))
    with FileDevice(os.open(path, os.O_RDWR)) as dev:
        yield dev


def bar0(dev: Device) -> Region:
    return dev.region(v.VFIO_PCI_BAR0_REGION_INDEX)


def test_registers_are_little_endian_32_and_64_bit(device: FileDevice) -> None:
    ref = RefDevice(device)
    ref.write32(r.REG_SCRATCH0, 0x11223344)
    ref.write64(r.REG_DMA_SRC, 0x0102030405060708)
    assert bar0(device).read_exact(r.REG_SCRATCH0, 4) == bytes.fromhex("44332211")
    assert bar0(device).read_exact(r.REG_DMA_SRC, 8) == bytes.fromhex("0807060504030201")
    assert ref.read32(r.REG_SCRATCH0) == 0x11223344
    assert ref.read64(r.REG_DMA_SRC) == 0x0102030405060708


def test_dma_programs_src_dst_len_then_the_command(device: FileDevice) -> None:
    ref = RefDevice(device)
    bar0(device).write_int(r.REG_DMA_STATUS, 4, r.DMA_STATUS_ERROR)
    bar0(device).write_int(r.REG_DMA_ERROR, 4, errno.EFAULT)

    result = ref.dma(0x100000, 0x2000, 4096 + 17, Direction.FROM_DEVICE, Method.RW)

    assert ref.read64(r.REG_DMA_SRC) == 0x100000
    assert ref.read64(r.REG_DMA_DST) == 0x2000
    assert ref.read32(r.REG_DMA_LEN) == 4096 + 17
    assert ref.read32(r.REG_DMA_CMD) == r.DMA_FROM_DEVICE | r.DMA_METHOD_RW
    assert result == DmaResult(r.DMA_STATUS_ERROR, errno.EFAULT)
    assert not result.ok
    with pytest.raises(DmaError, match=r"DMA_ERROR=14 \(EFAULT\)") as caught:
        result.check("copy to guest")
    assert caught.value.errno == errno.EFAULT


def test_dma_command_word() -> None:
    assert dma_command(Direction.TO_DEVICE) == 0
    assert dma_command(Direction.GUEST_TO_GUEST, Method.RW) == 0x12
    assert dma_command(Direction.TO_DEVICE, Method.PIN, keep_pinned=True) == r.DMA_KEEP_PINNED
    assert dma_command(0x3, 0x40) == 0x43  # raw values pass through for bad-input tests


def test_a_successful_result() -> None:
    result = DmaResult(r.DMA_STATUS_DONE, 0)
    assert result.ok
    assert result.check() is result
    assert result.errno_name == "no error"
    assert not DmaResult(r.DMA_STATUS_DONE, errno.EINVAL).ok  # an errno without the error bit


def test_counters_read_each_register(device: FileDevice) -> None:
    offsets = (
        r.REG_DMA_DONE_COUNT,
        r.REG_PINNED_PAGES,
        r.REG_TOTAL_PINS,
        r.REG_TOTAL_UNPINS,
        r.REG_DMA_UNMAP_CALLS,
        r.REG_RESET_COUNT,
    )
    for value, offset in enumerate(offsets, start=1):
        bar0(device).write_int(offset, 4, value)
    ref = RefDevice(device)
    before = ref.counters()
    assert before == Counters(1, 2, 3, 4, 5, 6)
    bar0(device).write_int(r.REG_PINNED_PAGES, 4, 0)
    bar0(device).write_int(r.REG_DMA_UNMAP_CALLS, 4, 6)
    assert ref.counters().minus(before) == Counters(0, -2, 0, 0, 1, 0)


def test_device_memory_goes_through_bar2(device: FileDevice) -> None:
    ref = RefDevice(device)
    ref.mem_write(0x10, b"device memory")
    assert device.region(v.VFIO_PCI_BAR2_REGION_INDEX).read_exact(0x10, 13) == b"device memory"
    assert ref.mem_read(0x10, 6) == b"device"


def test_bar_sizes_from_the_read_back_mask() -> None:
    bar0_probe = BarProbe(original=0, mask=0xFFFFF000, bits=32)
    assert (bar0_probe.size, bar0_probe.prefetchable, bar0_probe.flags) == (4096, False, 0)
    one_mib = BarProbe(original=0, mask=0xFFFFFFFF_FFF0000C, bits=64)
    assert (one_mib.size, one_mib.prefetchable, one_mib.is_64bit) == (1 << 20, True, True)
    assert BarProbe(original=0, mask=0, bits=32).size == 0


class SizingConfig(Region):
    """Config space with one 64-bit prefetchable BAR of 8 MiB at 0x18, as hardware behaves."""

    SIZE = 8 << 20

    def __init__(self) -> None:
        self.bar = 0xFEC0_0000_0000_000C  # programmed address | 64-bit, prefetchable
        self.writes: list[tuple[int, int]] = []

    def read_int(self, offset: int, width: int) -> int:
        value = self.bar >> (32 if offset == 0x1C else 0)
        return value & 0xFFFFFFFF

    def write_int(self, offset: int, width: int, value: int) -> None:
        self.writes.append((offset, value))
        shift = 32 if offset == 0x1C else 0
        merged = (self.bar & ~(0xFFFFFFFF << shift)) | (value << shift)
        self.bar = (merged & ~(self.SIZE - 1) & ~0xF) | 0xC  # address bits below size are 0


def test_probing_a_64_bit_bar_sizes_both_dwords_and_restores_them() -> None:
    config = SizingConfig()
    probe = probe_memory_bar(config, 0x18)
    assert probe.bits == 64
    assert probe.size == 8 << 20
    assert probe.prefetchable
    assert probe.original == 0xFEC0_0000_0000_000C
    assert config.bar == 0xFEC0_0000_0000_000C
    assert [offset for offset, _ in config.writes] == [0x18, 0x18, 0x1C, 0x1C]
