# SPDX-License-Identifier: MIT
"""DMA_MAP/UNMAP (type1) and IOAS_MAP/UNMAP (iommufd): alignment, overlap, partial unmap,
unmap-all, VADDR update, limits, dirty-tracking setup, and bad input with its errno."""

from __future__ import annotations

import contextlib
import ctypes
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.mdev import MdevDevice
from harness.uapi import PAGE_SIZE, Container, DmaBuffer, IommuMode, OpenDevice, open_type1
from harness.uapi.open_device import IommufdMapper
from harness.uapi.raw import iommufd as i
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.errnos import expected_errno
from tests.uapi.util import IOVA, raises_errno

# MAP/UNMAP and IOAS ioctls are type1's and iommufd's: no mdev driver code runs (pins are
# test_device_dma.py's, where the driver's .dma_unmap does).
pytestmark = pytest.mark.core_only

PAGES = 16
# type1's lookups compute iova + size, which wraps to 0 for a mapping that ends at 2**64: an
# unmap never finds it (fixed upstream ~6.18, "handle DMA map/unmap up to the addressable limit").
TOP_OF_IOVA_BUG = "type1 cannot unmap a mapping that ends at 2**64 (fixed upstream ~6.18)"
SIZE = PAGES * PAGE_SIZE
RW = v.VFIO_DMA_MAP_FLAG_READ | v.VFIO_DMA_MAP_FLAG_WRITE
DMA_ENTRY_LIMIT = Path("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit")


@pytest.fixture
def buffer() -> Iterator[DmaBuffer]:
    with DmaBuffer(SIZE) as buf:
        yield buf


@pytest.fixture
def container(opened: OpenDevice) -> Container:
    return util.type1(opened).container


# -- both modes -------------------------------------------------------------------------------


def test_map_unmap(opened: OpenDevice, buffer: DmaBuffer) -> None:
    opened.dma.map_buffer(IOVA, buffer)
    assert opened.dma.unmap(IOVA, SIZE) == SIZE


@pytest.mark.parametrize("where", ["same", "inside", "straddling_start", "straddling_end"])
def test_map_overlap(opened: OpenDevice, buffer: DmaBuffer, where: str) -> None:
    opened.dma.map(IOVA, buffer.vaddr, SIZE // 2)
    start = {
        "same": IOVA,
        "inside": IOVA + PAGE_SIZE,
        "straddling_start": IOVA - PAGE_SIZE,
        "straddling_end": IOVA + SIZE // 2 - PAGE_SIZE,
    }[where]
    with raises_errno(errno.EEXIST):
        opened.dma.map(start, buffer.vaddr + SIZE // 2, 2 * PAGE_SIZE)


def test_map_adjacent(opened: OpenDevice, buffer: DmaBuffer) -> None:
    opened.dma.map(IOVA, buffer.vaddr, SIZE // 2)
    opened.dma.map(IOVA + SIZE // 2, buffer.vaddr + SIZE // 2, SIZE // 2)
    assert opened.dma.unmap(IOVA, SIZE) == SIZE  # one unmap over both mappings


def test_unmap_all(opened: OpenDevice, buffer: DmaBuffer) -> None:
    for n in range(4):
        opened.dma.map(IOVA + n * 2 * SIZE, buffer.vaddr, SIZE)
    assert opened.dma.unmap_all() == 4 * SIZE
    opened.dma.map_buffer(IOVA, buffer)  # everything is gone: the same IOVA maps again


def test_map_same_memory_twice(opened: OpenDevice, buffer: DmaBuffer) -> None:
    opened.dma.map_buffer(IOVA, buffer)
    opened.dma.map_buffer(IOVA + SIZE, buffer)
    assert opened.dma.unmap_all() == 2 * SIZE


def test_map_size_zero(opened: OpenDevice, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EINVAL):
        opened.dma.map(IOVA, buffer.vaddr, 0)


def test_map_unaligned_iova(opened: OpenDevice, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EINVAL):
        opened.dma.map(IOVA + 0x800, buffer.vaddr, PAGE_SIZE)


# -- type1 ------------------------------------------------------------------------------------


def test_type1_iommu_info(container: Container) -> None:
    info = container.iommu_info()
    assert info.iova_pgsizes & PAGE_SIZE
    assert info.migration is not None, "an mdev container offers dirty tracking"
    assert info.migration.pgsize_bitmap & PAGE_SIZE
    assert info.dma_avail is not None


def test_type1_dma_avail_counts_mappings(container: Container, buffer: DmaBuffer) -> None:
    before = container.iommu_info().dma_avail
    assert before is not None
    container.map_buffer(IOVA, buffer)
    container.map_buffer(IOVA + SIZE, buffer)
    assert container.iommu_info().dma_avail == before - 2
    container.unmap_all()
    assert container.iommu_info().dma_avail == before


@pytest.mark.parametrize("field", ["vaddr", "size"])
def test_type1_map_unaligned(container: Container, buffer: DmaBuffer, field: str) -> None:
    vaddr = buffer.vaddr + (0x100 if field == "vaddr" else 0)
    size = PAGE_SIZE + (0x100 if field == "size" else 0)
    with raises_errno(errno.EINVAL):
        container.map_dma(IOVA, size, vaddr)


def test_type1_map_without_read_or_write(container: Container, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EINVAL):
        container.map_dma(IOVA, SIZE, buffer.vaddr, flags=0)


def test_type1_map_unknown_flags(container: Container, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EINVAL):
        container.map_dma(IOVA, SIZE, buffer.vaddr, flags=RW | 0x100)


def test_type1_map_argsz_too_small(container: Container, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EINVAL):
        container.map_dma(IOVA, SIZE, buffer.vaddr, argsz=31)


def test_type1_map_iova_wraparound(container: Container, buffer: DmaBuffer) -> None:
    with raises_errno(expected_errno("map_dma_wraparound")):
        container.map_dma(2**64 - PAGE_SIZE, 2 * PAGE_SIZE, buffer.vaddr)


@pytest.mark.parametrize("unmap", ["range", "all"])
def test_type1_map_at_top_of_iova_space(
    container: Container, buffer: DmaBuffer, unmap: str
) -> None:
    # Any IOVA is valid for an emulated IOMMU, up to and including the last page.
    container.map_dma(2**64 - SIZE, SIZE, buffer.vaddr)
    unmapped = (
        container.unmap_dma(2**64 - SIZE, SIZE) if unmap == "range" else container.unmap_all()
    )
    if unmapped == 0:  # the lookup missed the mapping: the bug, seen, not assumed by version
        pytest.xfail(TOP_OF_IOVA_BUG)
    assert unmapped == SIZE


def test_type1_map_readonly_and_writeonly(container: Container, buffer: DmaBuffer) -> None:
    container.map_dma(IOVA, SIZE // 2, buffer.vaddr, flags=v.VFIO_DMA_MAP_FLAG_READ)
    container.map_dma(IOVA + SIZE, SIZE // 2, buffer.vaddr, flags=v.VFIO_DMA_MAP_FLAG_WRITE)
    assert container.unmap_all() == SIZE


@pytest.mark.parametrize("where", ["middle", "head", "tail"])
def test_type1_partial_unmap_refused(container: Container, buffer: DmaBuffer, where: str) -> None:
    container.map_buffer(IOVA, buffer)
    start, size = {
        "middle": (IOVA + PAGE_SIZE, PAGE_SIZE),
        "head": (IOVA, PAGE_SIZE),
        "tail": (IOVA + SIZE - PAGE_SIZE, PAGE_SIZE),
    }[where]
    with raises_errno(errno.EINVAL):  # a v2 container never splits a mapping
        container.unmap_dma(start, size)
    assert container.unmap_dma(IOVA, SIZE) == SIZE


def test_type1_unmap_empty_range(container: Container) -> None:
    assert container.unmap_dma(IOVA, SIZE) == 0


def test_type1_unmap_several_and_holes(container: Container, buffer: DmaBuffer) -> None:
    container.map_dma(IOVA, PAGE_SIZE, buffer.vaddr)
    container.map_dma(IOVA + 4 * PAGE_SIZE, 2 * PAGE_SIZE, buffer.vaddr)
    assert container.unmap_dma(IOVA, SIZE) == 3 * PAGE_SIZE


@pytest.mark.parametrize("field", ["iova", "size"])
def test_type1_unmap_unaligned(container: Container, buffer: DmaBuffer, field: str) -> None:
    container.map_buffer(IOVA, buffer)
    iova = IOVA + (0x100 if field == "iova" else 0)
    size = SIZE + (0x100 if field == "size" else 0)
    with raises_errno(errno.EINVAL):
        container.unmap_dma(iova, size)


def test_type1_unmap_size_zero(container: Container) -> None:
    with raises_errno(errno.EINVAL):
        container.unmap_dma(IOVA, 0)


def test_type1_unmap_wraparound(container: Container) -> None:
    with raises_errno(expected_errno("unmap_dma_wraparound")):
        container.unmap_dma(2**64 - PAGE_SIZE, 2 * PAGE_SIZE)


@pytest.mark.parametrize("field", ["iova", "size"])
def test_type1_unmap_all_with_range(container: Container, field: str) -> None:
    iova, size = (PAGE_SIZE, 0) if field == "iova" else (0, PAGE_SIZE)
    with raises_errno(errno.EINVAL):
        container.unmap_dma(iova, size, flags=v.VFIO_DMA_UNMAP_FLAG_ALL)


def test_type1_unmap_unknown_flags(container: Container) -> None:
    with raises_errno(errno.EINVAL):
        container.unmap_dma(IOVA, SIZE, flags=0x80)


def test_type1_unmap_argsz_too_small(container: Container) -> None:
    with raises_errno(errno.EINVAL):
        container.unmap_dma(IOVA, SIZE, argsz=23)


def test_type1_unmap_all_with_dirty_bitmap(container: Container) -> None:
    flags = v.VFIO_DMA_UNMAP_FLAG_ALL | v.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP
    with raises_errno(errno.EINVAL):
        container.unmap_dma(0, 0, flags=flags)


def test_type1_check_extensions_with_mdev(container: Container) -> None:
    assert container.check_extension(v.VFIO_UNMAP_ALL) == 1
    # Updating vaddrs is refused while an emulated-IOMMU (mdev) group is attached.
    assert container.check_extension(v.VFIO_UPDATE_VADDR) == 0


def test_type1_vaddr_invalidate_refused_with_mdev(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    with raises_errno(errno.EBUSY):
        container.unmap_dma(IOVA, SIZE, flags=v.VFIO_DMA_UNMAP_FLAG_VADDR)
    assert container.unmap_dma(IOVA, SIZE) == SIZE


def test_type1_vaddr_update_of_valid_mapping(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    with raises_errno(errno.EINVAL):  # its vaddr was never invalidated
        container.map_dma(IOVA, SIZE, buffer.vaddr, flags=v.VFIO_DMA_MAP_FLAG_VADDR)


def test_type1_vaddr_update_of_nothing(container: Container, buffer: DmaBuffer) -> None:
    with raises_errno(errno.ENOENT):
        container.map_dma(IOVA, SIZE, buffer.vaddr, flags=v.VFIO_DMA_MAP_FLAG_VADDR)


def test_type1_vaddr_update_with_permissions(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    with raises_errno(errno.EINVAL):
        container.map_dma(IOVA, SIZE, buffer.vaddr, flags=RW | v.VFIO_DMA_MAP_FLAG_VADDR)


@contextlib.contextmanager
def dma_entry_limit(limit: int) -> Iterator[None]:
    if not DMA_ENTRY_LIMIT.exists():
        pytest.skip(f"{DMA_ENTRY_LIMIT} does not exist (vfio_iommu_type1 built in?)")
    saved = DMA_ENTRY_LIMIT.read_text()
    DMA_ENTRY_LIMIT.write_text(str(limit))
    try:
        yield
    finally:
        DMA_ENTRY_LIMIT.write_text(saved)


def test_type1_dma_entry_limit(mdev: MdevDevice, buffer: DmaBuffer) -> None:
    util.require_mode(IommuMode.TYPE1)
    assert mdev.iommu_group is not None
    with dma_entry_limit(4), open_type1(mdev.iommu_group, mdev.uuid) as opened:
        container = util.type1(opened).container
        assert container.iommu_info().dma_avail == 4
        for n in range(4):
            container.map_dma(IOVA + n * PAGE_SIZE, PAGE_SIZE, buffer.vaddr)
        with raises_errno(errno.ENOSPC):
            container.map_dma(IOVA + 4 * PAGE_SIZE, PAGE_SIZE, buffer.vaddr)
        container.unmap_dma(IOVA, PAGE_SIZE)
        container.map_dma(IOVA + 4 * PAGE_SIZE, PAGE_SIZE, buffer.vaddr)  # a slot is free again


def test_type1_v1_unmap_semantics(mdev: MdevDevice, buffer: DmaBuffer) -> None:
    util.require_mode(IommuMode.TYPE1)
    assert mdev.iommu_group is not None
    with open_type1(mdev.iommu_group, mdev.uuid, iommu_type=v.VFIO_TYPE1_IOMMU) as opened:
        container = util.type1(opened).container
        container.map_buffer(IOVA, buffer)
        # v1: an unmap starting inside a mapping succeeds and unmaps nothing...
        assert container.unmap_dma(IOVA + PAGE_SIZE, PAGE_SIZE) == 0
        # ...and one covering its first page unmaps all of it.
        assert container.unmap_dma(IOVA, PAGE_SIZE) == SIZE


# -- type1 dirty tracking (setup and bad input; the device's writes are in test_device_dma) ----


def test_type1_dirty_start_stop(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    container.dirty_pages_start()
    container.dirty_pages_start()  # starting again is harmless
    bitmap = container.dirty_pages_bitmap(IOVA, SIZE, PAGE_SIZE)
    assert len(bitmap) == 8
    container.dirty_pages_stop()
    container.dirty_pages_stop()


def test_type1_dirty_bitmap_without_start(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    with raises_errno(errno.EINVAL):
        container.dirty_pages_bitmap(IOVA, SIZE, PAGE_SIZE)


@pytest.mark.parametrize("what", ["start_and_stop", "unknown", "none"])
def test_type1_dirty_bad_flags(container: Container, what: str) -> None:
    flags = {
        "start_and_stop": v.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | v.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
        "unknown": 0x100,
        "none": 0,
    }[what]
    with raises_errno(errno.EINVAL):
        container.dirty_pages(flags)


@pytest.mark.parametrize("what", ["pgsize", "unaligned", "partial_mapping"])
def test_type1_dirty_bitmap_bad_range(container: Container, buffer: DmaBuffer, what: str) -> None:
    container.map_buffer(IOVA, buffer)
    container.dirty_pages_start()
    iova, size, pgsize = {
        "pgsize": (IOVA, SIZE, 2 * PAGE_SIZE),
        "unaligned": (IOVA + 0x100, SIZE, PAGE_SIZE),
        "partial_mapping": (IOVA + PAGE_SIZE, PAGE_SIZE, PAGE_SIZE),
    }[what]
    with raises_errno(errno.EINVAL):
        container.dirty_pages_bitmap(iova, size, pgsize)
    container.dirty_pages_stop()


def test_type1_dirty_on_v1_container(mdev: MdevDevice) -> None:
    util.require_mode(IommuMode.TYPE1)
    assert mdev.iommu_group is not None
    group = mdev.iommu_group
    with (
        open_type1(group, mdev.uuid, iommu_type=v.VFIO_TYPE1_IOMMU) as opened,
        raises_errno(errno.EACCES),
    ):
        util.type1(opened).container.dirty_pages_start()


def test_type1_unmap_dirty_bitmap_without_tracking(container: Container, buffer: DmaBuffer) -> None:
    container.map_buffer(IOVA, buffer)
    with raises_errno(errno.EINVAL):
        container.unmap_dma_dirty(IOVA, SIZE, PAGE_SIZE)


# -- iommufd ----------------------------------------------------------------------------------


@pytest.fixture
def ioas(opened: OpenDevice) -> IommufdMapper:
    if not isinstance(opened.dma, IommufdMapper):
        pytest.skip("an iommufd IOAS ioctl: not applicable to a type1 container")
    return opened.dma


def test_iommufd_map_unknown_flags(ioas: IommufdMapper, buffer: DmaBuffer) -> None:
    with raises_errno(errno.EOPNOTSUPP):
        ioas.iommufd.ioas_map(ioas.ioas_id, buffer.vaddr, SIZE, iova=IOVA, flags=1 << 20)


def test_iommufd_map_kernel_picks_iova(ioas: IommufdMapper, buffer: DmaBuffer) -> None:
    iova = ioas.iommufd.ioas_map(ioas.ioas_id, buffer.vaddr, SIZE)
    assert iova % PAGE_SIZE == 0
    assert ioas.unmap(iova, SIZE) == SIZE


def test_iommufd_unmap_nothing(ioas: IommufdMapper) -> None:
    with raises_errno(errno.ENOENT):
        ioas.unmap(IOVA, SIZE)


def test_iommufd_map_unknown_ioas(ioas: IommufdMapper, buffer: DmaBuffer) -> None:
    with raises_errno(errno.ENOENT):
        ioas.iommufd.ioas_map(0xFFFF, buffer.vaddr, SIZE, iova=IOVA)


def test_iommufd_map_size_too_big(ioas: IommufdMapper, buffer: DmaBuffer) -> None:
    request = i.iommu_ioas_map(
        size=ctypes.sizeof(i.iommu_ioas_map) + 8,
        flags=i.IOMMU_IOAS_MAP_READABLE | i.IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id=ioas.ioas_id,
        user_va=buffer.vaddr,
        length=SIZE,
        iova=IOVA,
    )
    raw = ctypes.create_string_buffer(bytes(request) + b"\x01" + bytes(7))
    with raises_errno(errno.E2BIG):  # a larger size with a non-zero tail
        ioas.iommufd.ioctl(i.IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP", raw)
