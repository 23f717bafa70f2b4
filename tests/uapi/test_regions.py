# SPDX-License-Identifier: MIT
"""Every region to its edges, each region a test of its own (a broken one never hides the next).

Reads and writes of each width at 0, size-w, size-1, size, size+1, 0x100, 0xffff, 0x10000,
0x10010, 2**32 and the end of the region's offset window: inside the region they must work,
outside it they must fail with EINVAL. A driver that performs an access outside the region is
unsafe (it reads or writes memory that is not the region's, or aliases 0x10010 onto 0x10 when it
keeps offsets in 16 bits): that is a SafetyError. A region without the READ or WRITE flag must
refuse that access. In-range writes write back what was read, so no register changes.

A region that is readable, writable and mmap-able is memory (device memory, a framebuffer):
a distinct pattern written at distinct offsets through pwrite must read back through pread and
through mmap, every page, the last one included, so an offset that is ignored, skewed or
truncated shows up.

One IOMMU mode suffices: region access does not depend on it.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable, Iterator

import pytest

from harness.mdev import MdevDevice
from harness.uapi import OpenDevice, Region, RegionInfo
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.util import raises_errno, refused_out_of_range
from tests.uapi.verdict import SafetyError

WIDTHS = (1, 2, 4, 8)
REGION_SLOTS = range(v.VFIO_PCI_NUM_REGIONS)  # a vfio-pci device's fixed indexes; more below
DEFAULT_WINDOW = 1 << 40  # vfio-pci's VFIO_PCI_OFFSET_SHIFT
TAG = 16  # bytes of pattern at the start and end of each page
SEED = 0x5A


@pytest.fixture
def device(mdev: MdevDevice) -> Iterator[OpenDevice]:
    with util.open_device(mdev, util.any_mode()) as opened:
        yield opened


def region_at(opened: OpenDevice, index: int) -> RegionInfo:
    count = opened.device.info().num_regions
    if index >= count:
        pytest.skip(f"the device has {count} regions")
    return opened.device.region_info(index)


def window_of(opened: OpenDevice, info: RegionInfo) -> int:
    """How far the region's offset window reaches: to the next region's offset."""
    later = [r.offset for r in util.regions(opened.device) if r.offset > info.offset]
    return min(later) - info.offset if later else DEFAULT_WINDOW


def accesses(size: int, window: int) -> Iterator[tuple[int, int, bool]]:
    """(width, offset, whether it fits inside the region) of every probe, each width."""
    for width in WIDTHS:
        for offset in probes(size, width, window):
            yield width, offset, offset + width <= size


def probes(size: int, width: int, window: int) -> list[int]:
    points = {0, size - width, size - 1, size, size + 1, 0x100, 0xFFFF, 0x10000, 0x10010}
    points |= {1 << 32, window - width}
    return sorted(p for p in points if 0 <= p <= window - width)


def _sized(opened: OpenDevice, index: int) -> RegionInfo:
    info = region_at(opened, index)
    if not info.size:
        pytest.skip(f"region {index} is empty (test_empty_regions covers it)")
    return info


@pytest.mark.parametrize("index", REGION_SLOTS, ids=lambda i: f"region{i}")
def test_region_reads_to_the_edges(device: OpenDevice, index: int) -> None:
    info = _sized(device, index)
    region = Region(device.device, info)
    window = window_of(device, info)
    failures = util.Failures()
    for width, offset, inside in accesses(info.size, window):
        with failures.check(f"{width}-byte read at {offset:#x}"):
            if inside and info.readable:
                got = region.read(offset, width)
                assert len(got) == width, f"read {len(got)} bytes of {width}"
            elif inside:
                with raises_errno(errno.EINVAL):  # no READ flag
                    region.read(offset, width)
            else:
                with refused_out_of_range(errno.EINVAL):
                    region.read(offset, width)
    failures.verify(f"region {index}: nothing to probe")


@pytest.mark.parametrize("index", REGION_SLOTS, ids=lambda i: f"region{i}")
def test_region_writes_to_the_edges(device: OpenDevice, index: int) -> None:
    info = _sized(device, index)
    region = Region(device.device, info)
    window = window_of(device, info)
    failures = util.Failures()
    for width, offset, inside in accesses(info.size, window):
        with failures.check(f"{width}-byte write at {offset:#x}"):
            if inside and info.writable and info.readable:
                same = region.read_exact(offset, width)  # written back: nothing changes
                assert region.write(offset, same) == width, "short write"
            elif inside and not info.writable:
                with raises_errno(errno.EINVAL):  # no WRITE flag
                    region.write(offset, bytes(width))
            elif not inside:
                with refused_out_of_range(errno.EINVAL):
                    region.write(offset, bytes(width))
    failures.verify(f"region {index} is write-only: only out-of-range writes to probe")


def test_zero_length_access(device: OpenDevice) -> None:
    """A zero-length read or write at a region's start is a no-op (0 bytes), not an error."""
    failures = util.Failures()
    for info in util.regions(device.device):
        if info.size and info.readable:
            with failures.check(f"region {info.index}"):
                assert os.pread(device.device.fd, 0, info.offset) == b""
                if info.writable:
                    assert os.pwrite(device.device.fd, b"", info.offset) == 0
    failures.verify("the device has no readable region")


def test_empty_regions(device: OpenDevice) -> None:
    """A region of size 0 with an offset window of its own refuses every access (EINVAL); one
    whose offset falls inside another region's window is that region's business."""
    spans = [(r.offset, r.offset + r.size) for r in util.regions(device.device) if r.size]
    failures = util.Failures()
    for info in util.regions(device.device):
        if info.size or any(start <= info.offset < end for start, end in spans):
            continue
        with failures.check(f"region {info.index}"), refused_out_of_range(errno.EINVAL):
            os.pread(device.device.fd, 4, info.offset)
    failures.verify("no empty region has an offset window of its own")


def test_access_beyond_every_region(device: OpenDevice) -> None:
    last = max(info.offset + info.size for info in util.regions(device.device))
    with refused_out_of_range(errno.EINVAL):
        os.pread(device.device.fd, 4, last + (1 << 40))


def test_device_specific_regions(device: OpenDevice) -> None:
    """Regions past vfio-pci's fixed ones (a device's own): reads inside work, past the end
    fail (the edge tests above cover the fixed indexes one by one)."""
    extra = [r for r in util.regions(device.device) if r.index >= v.VFIO_PCI_NUM_REGIONS]
    failures = util.Failures()
    for info in extra:
        if not (info.size and info.readable):
            continue
        region = Region(device.device, info)
        with failures.check(f"region {info.index}"):
            assert len(region.read(0, 1)) == 1
            with refused_out_of_range(errno.EINVAL):
                region.read(info.size, 1)
    failures.verify("the device has no readable device-specific region")


# -- memory: pwrite, pread and mmap agree at every page ----------------------------------------


def memory_regions(opened: OpenDevice) -> list[RegionInfo]:
    found = [
        info
        for info in util.regions(opened.device)
        if info.size and info.readable and info.writable and info.mmap_areas()
    ]
    util.require("mmap", bool(found), "the device has no read/write mmap-able region (memory)")
    return found


def page_pattern(page: int, seed: int) -> tuple[bytes, bytes]:
    """Distinct bytes for the start and the end of each page (a skewed or truncated offset
    lands another page's, or another seed's, bytes)."""
    head = (b"%08x" % page + b"%08x" % seed)[:TAG]
    tail = bytes((page * 7 + seed + i) & 0xFF for i in range(TAG))
    return head, tail


def test_memory_regions_hold_their_data(device: OpenDevice) -> None:
    failures = util.Failures()
    for info in memory_regions(device):
        region = Region(device.device, info)
        pages = info.size // util.PAGE_SIZE
        for page in range(pages):
            head, tail = page_pattern(page, SEED)
            region.write_exact(page * util.PAGE_SIZE, head)
            region.write_exact((page + 1) * util.PAGE_SIZE - TAG, tail)
        with failures.check(f"region {info.index} through pread"):
            _check_pages(region.read_exact, range(pages))
        for area in info.mmap_areas():
            with failures.check(f"region {info.index} mmap area at {area.offset:#x}"):
                mapped = region.mmap(area.offset, area.size)
                try:
                    first = area.offset // util.PAGE_SIZE
                    pages_of_area = range(first, first + area.size // util.PAGE_SIZE)
                    _check_pages(_reader(mapped, area.offset), pages_of_area)
                finally:
                    mapped.close()
    failures.verify("no memory region")


def _reader(mapped: mmap.mmap, base: int) -> Callable[[int, int], bytes]:
    """Reads of region offsets through a mapping of the region from `base`."""
    return lambda offset, size: bytes(mapped[offset - base : offset - base + size])


def _check_pages(read: Callable[[int, int], bytes], pages: range) -> None:
    """Each page's pattern where it was written (`read`: offset in the region, size)."""
    for page in pages:
        head, tail = page_pattern(page, SEED)
        at = page * util.PAGE_SIZE
        got_head, got_tail = read(at, TAG), read(at + util.PAGE_SIZE - TAG, TAG)
        if (got_head, got_tail) != (head, tail):
            raise SafetyError(
                f"page {page} (offset {at:#x}) holds {got_head!r}..{got_tail.hex()}, written "
                f"{head!r}..{tail.hex()}: data is not where it was written"
            )
