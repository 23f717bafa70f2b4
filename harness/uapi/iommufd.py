# SPDX-License-Identifier: MIT
"""Safe wrapper of /dev/iommu: IOAS objects and their mappings."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Sequence
from dataclasses import dataclass

from harness.uapi.dma import DmaBuffer
from harness.uapi.errors import IoctlError
from harness.uapi.fdobject import FdObject, open_node
from harness.uapi.raw import iommufd as i

DEFAULT_IOMMUFD_PATH = "/dev/iommu"
READ_WRITE = i.IOMMU_IOAS_MAP_READABLE | i.IOMMU_IOAS_MAP_WRITEABLE
ALL_IOVA = 2**64 - 1


@dataclass(frozen=True)
class IommufdRange:
    start: int
    last: int  # inclusive


def _range_array(ranges: Sequence[IommufdRange]) -> ctypes.Array[i.iommu_iova_range]:
    array = (i.iommu_iova_range * max(1, len(ranges)))()
    for slot, rng in zip(array, ranges, strict=False):
        slot.start = rng.start
        slot.last = rng.last
    return array


class Iommufd(FdObject):
    """An iommufd context: allocate IOAS objects, map user memory, and bind devices to it."""

    @classmethod
    def open(cls, path: str = DEFAULT_IOMMUFD_PATH) -> Iommufd:
        return cls(open_node(path, "iommufd"))

    def ioas_alloc(self) -> int:
        request = i.iommu_ioas_alloc(size=ctypes.sizeof(i.iommu_ioas_alloc))
        self.ioctl(i.IOMMU_IOAS_ALLOC, "IOMMU_IOAS_ALLOC", request)
        return int(request.out_ioas_id)

    def destroy(self, object_id: int) -> None:
        request = i.iommu_destroy(size=ctypes.sizeof(i.iommu_destroy), id=object_id)
        self.ioctl(i.IOMMU_DESTROY, "IOMMU_DESTROY", request)

    def ioas_map(
        self,
        ioas_id: int,
        vaddr: int,
        length: int,
        iova: int | None = None,
        flags: int = READ_WRITE,
    ) -> int:
        """Map user memory; with `iova` the mapping is fixed there, else the kernel picks.

        Returns the IOVA used.
        """
        request = i.iommu_ioas_map(
            size=ctypes.sizeof(i.iommu_ioas_map),
            flags=flags,
            ioas_id=ioas_id,
            user_va=vaddr,
            length=length,
            iova=iova or 0,
        )
        if iova is not None:
            request.flags |= i.IOMMU_IOAS_MAP_FIXED_IOVA
        self.ioctl(i.IOMMU_IOAS_MAP, "IOMMU_IOAS_MAP", request)
        return int(request.iova)

    def ioas_map_buffer(
        self, ioas_id: int, buffer: DmaBuffer, iova: int | None = None, flags: int = READ_WRITE
    ) -> int:
        return self.ioas_map(ioas_id, buffer.vaddr, buffer.size, iova, flags)

    def ioas_unmap(self, ioas_id: int, iova: int, length: int) -> int:
        """Returns the number of bytes unmapped; iova=0 length=2**64-1 unmaps everything."""
        request = i.iommu_ioas_unmap(
            size=ctypes.sizeof(i.iommu_ioas_unmap), ioas_id=ioas_id, iova=iova, length=length
        )
        self.ioctl(i.IOMMU_IOAS_UNMAP, "IOMMU_IOAS_UNMAP", request)
        return int(request.length)

    def ioas_copy(
        self,
        dst_ioas_id: int,
        src_ioas_id: int,
        src_iova: int,
        length: int,
        dst_iova: int | None = None,
        flags: int = READ_WRITE,
    ) -> int:
        request = i.iommu_ioas_copy(
            size=ctypes.sizeof(i.iommu_ioas_copy),
            flags=flags,
            dst_ioas_id=dst_ioas_id,
            src_ioas_id=src_ioas_id,
            length=length,
            dst_iova=dst_iova or 0,
            src_iova=src_iova,
        )
        if dst_iova is not None:
            request.flags |= i.IOMMU_IOAS_MAP_FIXED_IOVA
        self.ioctl(i.IOMMU_IOAS_COPY, "IOMMU_IOAS_COPY", request)
        return int(request.dst_iova)

    def iova_ranges(self, ioas_id: int) -> tuple[list[IommufdRange], int]:
        """The IOVA ranges usable in the IOAS, and the required IOVA alignment."""
        capacity = 8
        while True:
            array = (i.iommu_iova_range * capacity)()
            request = i.iommu_ioas_iova_ranges(
                size=ctypes.sizeof(i.iommu_ioas_iova_ranges),
                ioas_id=ioas_id,
                num_iovas=capacity,
                allowed_iovas=ctypes.addressof(array),
            )
            try:
                self.ioctl(i.IOMMU_IOAS_IOVA_RANGES, "IOMMU_IOAS_IOVA_RANGES", request)
            except IoctlError as exc:
                # EMSGSIZE: the array was too small; num_iovas now says how big it must be.
                if exc.errno == errno.EMSGSIZE and request.num_iovas > capacity:
                    capacity = int(request.num_iovas)
                    continue
                raise
            ranges = [IommufdRange(r.start, r.last) for r in array[: request.num_iovas]]
            return ranges, int(request.out_iova_alignment)

    def allow_iovas(self, ioas_id: int, ranges: Sequence[IommufdRange]) -> None:
        array = _range_array(ranges)
        request = i.iommu_ioas_allow_iovas(
            size=ctypes.sizeof(i.iommu_ioas_allow_iovas),
            ioas_id=ioas_id,
            num_iovas=len(ranges),
            allowed_iovas=ctypes.addressof(array),
        )
        self.ioctl(i.IOMMU_IOAS_ALLOW_IOVAS, "IOMMU_IOAS_ALLOW_IOVAS", request)

    def option(self, option_id: int, op: int, object_id: int = 0, val64: int = 0) -> int:
        """IOMMU_OPTION; returns val64 as the kernel left it (the value, for OP_GET)."""
        request = i.iommu_option(
            size=ctypes.sizeof(i.iommu_option),
            option_id=option_id,
            op=op,
            object_id=object_id,
            val64=val64,
        )
        self.ioctl(i.IOMMU_OPTION, "IOMMU_OPTION", request)
        return int(request.val64)

    def vfio_ioas(self, op: int, ioas_id: int = 0) -> int:
        """IOMMU_VFIO_IOAS: get/set/clear the IOAS that the VFIO compat container uses."""
        request = i.iommu_vfio_ioas(size=ctypes.sizeof(i.iommu_vfio_ioas), ioas_id=ioas_id, op=op)
        self.ioctl(i.IOMMU_VFIO_IOAS, "IOMMU_VFIO_IOAS", request)
        return int(request.ioas_id)
