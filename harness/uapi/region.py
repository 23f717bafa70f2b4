# SPDX-License-Identifier: MIT
"""A device region: its info (with capabilities) and access by pread/pwrite and mmap."""

from __future__ import annotations

import ctypes
import mmap
import os
from dataclasses import dataclass

from harness.uapi.caps import Capability, read_array, read_struct, walk_capabilities
from harness.uapi.errors import ShortTransferError, VfioError
from harness.uapi.fdobject import FdObject
from harness.uapi.raw import vfio as v

_WIDTHS = (1, 2, 4, 8)


@dataclass(frozen=True)
class SparseArea:
    offset: int  # within the region
    size: int


@dataclass(frozen=True)
class RegionType:
    type: int
    subtype: int


class RegionFlags:
    """What a region's VFIO_REGION_INFO flags say, for any record with a `flags` field."""

    flags: int

    @property
    def readable(self) -> bool:
        return bool(self.flags & v.VFIO_REGION_INFO_FLAG_READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & v.VFIO_REGION_INFO_FLAG_WRITE)


@dataclass(frozen=True)
class RegionInfo(RegionFlags):
    index: int
    flags: int
    size: int
    offset: int  # of the region within the device fd
    capabilities: tuple[Capability, ...]
    sparse_areas: tuple[SparseArea, ...] | None  # None: no sparse-mmap capability
    region_type: RegionType | None

    @property
    def mmappable(self) -> bool:
        return bool(self.flags & v.VFIO_REGION_INFO_FLAG_MMAP)

    def mmap_areas(self) -> tuple[SparseArea, ...]:
        """Where mmap is allowed: the sparse areas if the driver lists them, else everything."""
        if not self.mmappable:
            return ()
        if self.sparse_areas is not None:
            return self.sparse_areas
        return (SparseArea(0, self.size),)


def parse_region_info(header: v.vfio_region_info, buffer: bytes) -> RegionInfo:
    caps: list[Capability] = []
    if header.flags & v.VFIO_REGION_INFO_FLAG_CAPS:
        caps = walk_capabilities(buffer, header.cap_offset, ctypes.sizeof(header))
    sparse: tuple[SparseArea, ...] | None = None
    region_type = None
    for cap in caps:
        if cap.id == v.VFIO_REGION_INFO_CAP_SPARSE_MMAP:
            head = read_struct(cap, v.vfio_region_info_cap_sparse_mmap, "sparse mmap")
            areas = read_array(
                cap,
                v.vfio_region_sparse_mmap_area,
                ctypes.sizeof(head),
                head.nr_areas,
                "sparse mmap",
            )
            sparse = tuple(SparseArea(a.offset, a.size) for a in areas)
        elif cap.id == v.VFIO_REGION_INFO_CAP_TYPE:
            typed = read_struct(cap, v.vfio_region_info_cap_type, "region type")
            region_type = RegionType(typed.type, typed.subtype)
    return RegionInfo(
        header.index, header.flags, header.size, header.offset, tuple(caps), sparse, region_type
    )


class Region:
    """Access to one region through the device fd; offsets are relative to the region."""

    def __init__(self, device: FdObject, info: RegionInfo) -> None:
        self.device = device
        self.info = info

    def _where(self, offset: int, size: int) -> str:
        return f"region {self.info.index} [{offset:#x}+{size}]"

    def read(self, offset: int, size: int) -> bytes:
        """pread as the kernel answers it: may be short; errors raise VfioError."""
        try:
            return os.pread(self.device.fd, size, self.info.offset + offset)
        except OSError as exc:
            raise VfioError(f"pread {self._where(offset, size)}", exc.errno or 0) from None

    def write(self, offset: int, data: bytes) -> int:
        try:
            return os.pwrite(self.device.fd, data, self.info.offset + offset)
        except OSError as exc:
            raise VfioError(f"pwrite {self._where(offset, len(data))}", exc.errno or 0) from None

    def read_exact(self, offset: int, size: int) -> bytes:
        data = self.read(offset, size)
        if len(data) != size:
            raise ShortTransferError(f"pread {self._where(offset, size)}", size, len(data))
        return data

    def write_exact(self, offset: int, data: bytes) -> None:
        moved = self.write(offset, data)
        if moved != len(data):
            raise ShortTransferError(f"pwrite {self._where(offset, len(data))}", len(data), moved)

    def read_int(self, offset: int, width: int) -> int:
        """One little-endian access of 1, 2, 4 or 8 bytes (a single pread, as a CPU would)."""
        _check_width(width)
        return int.from_bytes(self.read_exact(offset, width), "little")

    def write_int(self, offset: int, width: int, value: int) -> None:
        _check_width(width)
        self.write_exact(offset, (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little"))

    def read32(self, offset: int) -> int:
        return self.read_int(offset, 4)

    def write32(self, offset: int, value: int) -> None:
        self.write_int(offset, 4, value)

    def mmap(
        self, offset: int = 0, length: int | None = None, *, writable: bool = True
    ) -> mmap.mmap:
        """Map [offset, offset+length) of the region (shared, so the device sees writes)."""
        size = self.info.size - offset if length is None else length
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            return mmap.mmap(
                self.device.fd,
                size,
                flags=mmap.MAP_SHARED,
                prot=prot,
                offset=self.info.offset + offset,
            )
        except OSError as exc:
            raise VfioError(f"mmap {self._where(offset, size)}", exc.errno or 0) from None


def _check_width(width: int) -> None:
    if width not in _WIDTHS:
        raise ValueError(f"access width must be one of {_WIDTHS}, not {width}")
