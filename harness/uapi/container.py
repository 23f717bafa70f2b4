# SPDX-License-Identifier: MIT
"""Safe wrapper of a VFIO container (/dev/vfio/vfio) and its type1 IOMMU ioctls."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from harness.uapi.caps import Capability, read_array, read_struct, walk_capabilities
from harness.uapi.dma import DmaBuffer
from harness.uapi.fdobject import FdObject, open_node
from harness.uapi.infoquery import argsz_buffer, query_info
from harness.uapi.raw import vfio as v

DEFAULT_CONTAINER_PATH = "/dev/vfio/vfio"
READ_WRITE = v.VFIO_DMA_MAP_FLAG_READ | v.VFIO_DMA_MAP_FLAG_WRITE


@dataclass(frozen=True)
class IovaRange:
    start: int
    end: int  # inclusive, as the kernel reports it


@dataclass(frozen=True)
class MigrationCapability:
    flags: int
    pgsize_bitmap: int
    max_dirty_bitmap_size: int


@dataclass(frozen=True)
class Type1Info:
    flags: int
    iova_pgsizes: int
    iova_ranges: tuple[IovaRange, ...] | None
    migration: MigrationCapability | None
    dma_avail: int | None
    capabilities: tuple[Capability, ...]


def dirty_bitmap_bytes(size: int, pgsize: int) -> int:
    """The kernel wants one bit per page, in whole u64 words."""
    pages = (size + pgsize - 1) // pgsize
    return (pages + 63) // 64 * 8


def _parse_type1_info(header: v.vfio_iommu_type1_info, buffer: bytes) -> Type1Info:
    caps: list[Capability] = []
    if header.flags & v.VFIO_IOMMU_INFO_CAPS:
        caps = walk_capabilities(buffer, header.cap_offset, ctypes.sizeof(header))
    ranges: tuple[IovaRange, ...] | None = None
    migration = None
    dma_avail = None
    for cap in caps:
        if cap.id == v.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE:
            head = read_struct(cap, v.vfio_iommu_type1_info_cap_iova_range, "IOVA range")
            entries = read_array(
                cap, v.vfio_iova_range, ctypes.sizeof(head), head.nr_iovas, "IOVA range"
            )
            ranges = tuple(IovaRange(r.start, r.end) for r in entries)
        elif cap.id == v.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION:
            mig = read_struct(cap, v.vfio_iommu_type1_info_cap_migration, "migration")
            migration = MigrationCapability(mig.flags, mig.pgsize_bitmap, mig.max_dirty_bitmap_size)
        elif cap.id == v.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
            dma_avail = read_struct(cap, v.vfio_iommu_type1_info_dma_avail, "DMA avail").avail
    return Type1Info(header.flags, header.iova_pgsizes, ranges, migration, dma_avail, tuple(caps))


class Container(FdObject):
    """A VFIO container: groups join it, then it is given an IOMMU model (type1)."""

    @classmethod
    def open(cls, path: str = DEFAULT_CONTAINER_PATH) -> Container:
        return cls(open_node(path, "container"))

    def api_version(self) -> int:
        return self.ioctl(v.VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION")

    def check_extension(self, extension: int) -> int:
        """Non-zero if the extension (an IOMMU type, or VFIO_UNMAP_ALL, ...) is supported."""
        return self.ioctl(v.VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION", extension)

    def set_iommu(self, iommu_type: int = v.VFIO_TYPE1v2_IOMMU) -> None:
        self.ioctl(v.VFIO_SET_IOMMU, "VFIO_SET_IOMMU", iommu_type)

    def iommu_info(self) -> Type1Info:
        header, buffer = query_info(
            self,
            v.VFIO_IOMMU_GET_INFO,
            "VFIO_IOMMU_GET_INFO",
            v.vfio_iommu_type1_info,
            lambda _info: None,
            v.VFIO_IOMMU_INFO_CAPS,
        )
        return _parse_type1_info(header, buffer)

    def map_dma(
        self, iova: int, size: int, vaddr: int, flags: int = READ_WRITE, argsz: int | None = None
    ) -> None:
        """VFIO_IOMMU_MAP_DMA; with flags=VFIO_DMA_MAP_FLAG_VADDR it re-points a mapping."""
        request = v.vfio_iommu_type1_dma_map(
            argsz=ctypes.sizeof(v.vfio_iommu_type1_dma_map) if argsz is None else argsz,
            flags=flags,
            vaddr=vaddr,
            iova=iova,
            size=size,
        )
        self.ioctl(v.VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", request)

    def map_buffer(
        self, iova: int, buffer: DmaBuffer, flags: int = READ_WRITE, size: int | None = None
    ) -> None:
        self.map_dma(iova, buffer.size if size is None else size, buffer.vaddr, flags)

    def unmap_dma(self, iova: int, size: int, flags: int = 0, argsz: int | None = None) -> int:
        """VFIO_IOMMU_UNMAP_DMA; returns the number of bytes the kernel says it unmapped."""
        request = v.vfio_iommu_type1_dma_unmap(
            argsz=ctypes.sizeof(v.vfio_iommu_type1_dma_unmap) if argsz is None else argsz,
            flags=flags,
            iova=iova,
            size=size,
        )
        self.ioctl(v.VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", request)
        return int(request.size)

    def unmap_all(self) -> int:
        return self.unmap_dma(0, 0, v.VFIO_DMA_UNMAP_FLAG_ALL)

    def unmap_dma_dirty(self, iova: int, size: int, pgsize: int) -> tuple[int, bytes]:
        """Unmap and collect the dirty bitmap of the range in one call."""
        bitmap = ctypes.create_string_buffer(dirty_bitmap_bytes(size, pgsize))
        header = v.vfio_iommu_type1_dma_unmap(
            flags=v.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, iova=iova, size=size
        )
        buffer = argsz_buffer(header, bytes(_bitmap_for(pgsize, bitmap)))
        self.ioctl(v.VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", buffer)
        request = v.vfio_iommu_type1_dma_unmap.from_buffer_copy(buffer)
        return int(request.size), bitmap.raw

    def dirty_pages(self, flags: int) -> None:
        """VFIO_IOMMU_DIRTY_PAGES with START or STOP (or any raw flags, for bad-input tests)."""
        request = v.vfio_iommu_type1_dirty_bitmap(
            argsz=ctypes.sizeof(v.vfio_iommu_type1_dirty_bitmap), flags=flags
        )
        self.ioctl(v.VFIO_IOMMU_DIRTY_PAGES, "VFIO_IOMMU_DIRTY_PAGES", request)

    def dirty_pages_start(self) -> None:
        self.dirty_pages(v.VFIO_IOMMU_DIRTY_PAGES_FLAG_START)

    def dirty_pages_stop(self) -> None:
        self.dirty_pages(v.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)

    def dirty_pages_bitmap(self, iova: int, size: int, pgsize: int) -> bytes:
        """The dirty bitmap of [iova, iova+size), one bit per `pgsize` page."""
        bitmap = ctypes.create_string_buffer(dirty_bitmap_bytes(size, pgsize))
        get = v.vfio_iommu_type1_dirty_bitmap_get(
            iova=iova, size=size, bitmap=_bitmap_for(pgsize, bitmap)
        )
        header = v.vfio_iommu_type1_dirty_bitmap(flags=v.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP)
        self.ioctl(
            v.VFIO_IOMMU_DIRTY_PAGES, "VFIO_IOMMU_DIRTY_PAGES", argsz_buffer(header, bytes(get))
        )
        return bitmap.raw


def _bitmap_for(pgsize: int, storage: ctypes.Array[ctypes.c_char]) -> v.vfio_bitmap:
    """A vfio_bitmap whose `__u64 *data` points at `storage`, which the kernel fills."""
    return v.vfio_bitmap(pgsize=pgsize, size=len(storage), data=ctypes.addressof(storage))
