# SPDX-License-Identifier: MIT
"""mmap of regions: only where the device allows it (MMAP flag, within the region), every area's
pages reading what pread reads, coherent with read/write, and refused (EINVAL) for private
mappings. (mm refuses unaligned offsets and zero lengths before the driver runs: not tested.)"""

from __future__ import annotations

import errno
import mmap
import os

import pytest

from harness.refdev import Direction, Method, RefDevice
from harness.uapi import PAGE_SIZE, DmaBuffer, OpenDevice, Region, RegionInfo, SparseArea
from tests.uapi import util
from tests.uapi.verdict import SafetyError


def mmap_errno(fd: int, offset: int, length: int, flags: int = mmap.MAP_SHARED) -> int:
    """0 if mmap(2) maps it (then unmapped), else its errno."""
    address = util.libc_mmap(fd, offset, length, flags)
    if address < 0:
        return -address
    util.libc_munmap(address, length)
    return 0


def holes(info: RegionInfo) -> list[int]:
    """Page offsets inside the region that no mmap area covers."""
    covered: set[int] = set()
    for area in info.mmap_areas():
        covered.update(range(area.offset, area.offset + area.size, PAGE_SIZE))
    return [page for page in range(0, info.size, PAGE_SIZE) if page not in covered]


def test_mmap_refused_without_mmap_flag(opened: OpenDevice) -> None:
    refused = [info for info in util.regions(opened.device) if info.size and not info.mmappable]
    failures = util.Failures()
    for info in refused:
        with failures.check(f"region {info.index}"):
            got = mmap_errno(opened.device.fd, info.offset, PAGE_SIZE)
            if got == 0:
                raise SafetyError("mapped although the region has no MMAP flag")
            assert got == errno.EINVAL, f"errno {got}, expected EINVAL"
    failures.verify("every region of the device is mmap-able")


def test_mmap_every_area(opened: OpenDevice) -> None:
    """Each area maps, and its first and last bytes read through the mapping what pread
    reads (a mapping of the wrong pages, or a fault handler that fails, shows up)."""
    failures = util.Failures()
    for info in util.mappable_regions(opened.device):
        region = Region(opened.device, info)
        for area in info.mmap_areas():
            where = f"region {info.index} area at {area.offset:#x}"
            with (
                failures.check(where),
                region.mmap(area.offset, area.size, writable=False) as mapped,
            ):
                assert len(mapped) == area.size
                if info.readable:
                    last = area.offset + area.size - 8
                    assert bytes(mapped[:8]) == region.read_exact(area.offset, 8)
                    assert bytes(mapped[-8:]) == region.read_exact(last, 8)
                else:
                    _ = bytes(mapped[:8]) + bytes(mapped[-8:])  # the pages fault in
    failures.verify("no region of the device is mmap-able")


def test_mmap_across_the_region_end(opened: OpenDevice) -> None:
    """A mapping that reaches past the region's (page-rounded) end must fail: a driver that
    maps it hands out memory that is not the region's."""
    failures = util.Failures()
    for info in util.mappable_regions(opened.device):
        area = info.mmap_areas()[-1]
        end = -(-info.size // PAGE_SIZE) * PAGE_SIZE
        with failures.check(f"region {info.index}"):
            got = mmap_errno(
                opened.device.fd, info.offset + area.offset, end - area.offset + PAGE_SIZE
            )
            if got == 0:
                length = end - area.offset + PAGE_SIZE
                raise SafetyError(
                    f"a mapping of {length:#x} bytes from {area.offset:#x} crosses the "
                    "region's end and was allowed"
                )
            assert got == errno.EINVAL, f"errno {got}, expected EINVAL"
    failures.verify("no region of the device is mmap-able")


def test_mmap_private_refused(opened: OpenDevice) -> None:
    info = util.mappable_regions(opened.device)[0]
    area = info.mmap_areas()[0]
    got = mmap_errno(opened.device.fd, info.offset + area.offset, PAGE_SIZE, mmap.MAP_PRIVATE)
    assert got == errno.EINVAL


def test_mmap_coherent_with_read_write(opened: OpenDevice) -> None:
    failures = util.Failures()
    for info in util.mappable_regions(opened.device):
        if not (info.readable and info.writable):
            continue
        region = Region(opened.device, info)
        area: SparseArea = info.mmap_areas()[0]
        span = min(area.size, 2 * PAGE_SIZE)
        with failures.check(f"region {info.index}"):
            saved = region.read_exact(area.offset, span)
            with region.mmap(area.offset, span) as mapped:
                data = os.urandom(span)
                mapped[:span] = data
                assert region.read_exact(area.offset, span) == data, "pread after mmap write"
                data = os.urandom(span)
                region.write_exact(area.offset, data)
                assert mapped[:span] == data, "mmap after pwrite"
                mapped[:span] = saved
    failures.verify("no mmap-able region is readable and writable")


@pytest.mark.refdev
def test_mmap_outside_sparse_areas(opened: OpenDevice) -> None:
    """Our device refuses mappings of its trapped half; the UAPI lets other drivers allow
    them ("may fail"), so this is ours only."""
    checked = 0
    for info in util.mappable_regions(opened.device):
        for page in holes(info)[:4]:
            got = mmap_errno(opened.device.fd, info.offset + page, PAGE_SIZE)
            assert got == errno.EINVAL, f"region {info.index} page {page:#x}: errno {got}"
            checked += 1
    if not checked:
        pytest.skip("the mmap-able regions have no sparse holes")


def test_mmap_read_only_mapping(opened: OpenDevice) -> None:
    info = util.mappable_regions(opened.device)[0]
    region = Region(opened.device, info)
    area = info.mmap_areas()[0]
    with region.mmap(area.offset, PAGE_SIZE, writable=False) as mapped:
        assert mapped[:64] == region.read_exact(area.offset, 64)


@pytest.mark.refdev
def test_mmap_seen_by_dma_engine(opened: OpenDevice, ref: RefDevice) -> None:
    with DmaBuffer(PAGE_SIZE) as buffer:
        opened.dma.map_buffer(util.IOVA, buffer)
        with ref.mem.mmap(0, PAGE_SIZE) as mapped:
            data = os.urandom(256)
            mapped[0x100:0x200] = data
            ref.dma(0x100, util.IOVA, 256, Direction.FROM_DEVICE, Method.RW).check()
            assert buffer.read(0, 256) == data
            buffer.write(0, data[::-1])
            ref.dma(util.IOVA, 0x300, 256, Direction.TO_DEVICE, Method.PIN).check()
            assert mapped[0x300:0x400] == data[::-1]


@pytest.mark.refdev
def test_mmap_accesses_bypass_the_driver(opened: OpenDevice, ref: RefDevice) -> None:
    """Through the mmap the driver is not called; through the fd each access is counted."""
    from harness.refdev import registers as r

    bar0_before = ref.read32(r.REG_BAR0_ACCESSES)
    trapped_before = ref.read32(r.REG_BAR2_TRAPPED)
    assert ref.read32(r.REG_BAR0_ACCESSES) == bar0_before + 2, "each BAR0 read counts itself"
    with ref.mem.mmap(0, PAGE_SIZE) as mapped:
        for i in range(16):
            mapped[i * 8 : i * 8 + 8] = bytes([i]) * 8
        _ = bytes(mapped[:128])
    assert ref.read32(r.REG_BAR2_TRAPPED) == trapped_before, "mmap accesses reached the driver"
    assert ref.mem.read_exact(0, 8) == bytes(8)
    ref.mem.write_exact(PAGE_SIZE, b"x")
    assert ref.read32(r.REG_BAR2_TRAPPED) == trapped_before + 2, "pread+pwrite counted once each"
