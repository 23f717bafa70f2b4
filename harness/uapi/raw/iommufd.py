# SPDX-License-Identifier: MIT
"""ctypes mirror of `linux/iommufd.h` (6.2+): the IOAS part an emulated (mdev) device can use.

Same conventions as `raw/vfio.py`: public module-level ints starting with an uppercase letter
are C names; `SINCE`, `UNTIL`, `OLD_VALUES`, `ENUM_CONSTANTS`, `IOCTLS` and `STRUCT_LAYOUTS`
carry the version bookkeeping. The header only exists from 6.2, so every item here has a
`since` of at least 6.2.

HWPT, hardware info, dirty tracking, fault queues, vIOMMU/vDEVICE and vEVENTQ objects are not
bound: they need a physical IOMMU, which an emulated-IOMMU device never has.
"""

from __future__ import annotations

from ctypes import Structure, c_int32, c_uint16, c_uint32, c_uint64

from harness.uapi.raw.ioctl import _IO
from harness.uapi.raw.versions import KernelVersion, Layout, kv

IOMMUFD_TYPE = ord(";")

# enum { IOMMUFD_CMD_* }: ioctl numbers, shared by all iommufd ioctls
IOMMUFD_CMD_BASE = 0x80
IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE
IOMMUFD_CMD_IOAS_ALLOC = 0x81
IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82
IOMMUFD_CMD_IOAS_COPY = 0x83
IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84
IOMMUFD_CMD_IOAS_MAP = 0x85
IOMMUFD_CMD_IOAS_UNMAP = 0x86
IOMMUFD_CMD_OPTION = 0x87
IOMMUFD_CMD_VFIO_IOAS = 0x88
IOMMUFD_CMD_IOAS_MAP_FILE = 0x8F
IOMMUFD_CMD_IOAS_CHANGE_PROCESS = 0x92


class iommu_destroy(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("id", c_uint32),
    )


IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)


class iommu_ioas_alloc(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("flags", c_uint32),
        ("out_ioas_id", c_uint32),
    )


IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)


class iommu_iova_range(Structure):
    _fields_ = (
        ("start", c_uint64),
        ("last", c_uint64),  # inclusive
    )


class iommu_ioas_iova_ranges(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("num_iovas", c_uint32),
        ("__reserved", c_uint32),
        ("allowed_iovas", c_uint64),  # user pointer to iommu_iova_range[]
        ("out_iova_alignment", c_uint64),
    )


IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)


class iommu_ioas_allow_iovas(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("num_iovas", c_uint32),
        ("__reserved", c_uint32),
        ("allowed_iovas", c_uint64),  # user pointer to iommu_iova_range[]
    )


IOMMU_IOAS_ALLOW_IOVAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS)

# enum iommufd_ioas_map_flags (map, map_file and copy)
IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2


class iommu_ioas_map(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("flags", c_uint32),
        ("ioas_id", c_uint32),
        ("__reserved", c_uint32),
        ("user_va", c_uint64),
        ("length", c_uint64),
        ("iova", c_uint64),
    )


IOMMU_IOAS_MAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)


class iommu_ioas_map_file(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("flags", c_uint32),
        ("ioas_id", c_uint32),
        ("fd", c_int32),
        ("start", c_uint64),
        ("length", c_uint64),
        ("iova", c_uint64),
    )


IOMMU_IOAS_MAP_FILE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_FILE)


class iommu_ioas_copy(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("flags", c_uint32),
        ("dst_ioas_id", c_uint32),
        ("src_ioas_id", c_uint32),
        ("length", c_uint64),
        ("dst_iova", c_uint64),
        ("src_iova", c_uint64),
    )


IOMMU_IOAS_COPY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY)


class iommu_ioas_unmap(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("iova", c_uint64),
        ("length", c_uint64),
    )


IOMMU_IOAS_UNMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

# enum iommufd_option
IOMMU_OPTION_RLIMIT_MODE = 0
IOMMU_OPTION_HUGE_PAGES = 1

# enum iommufd_option_ops
IOMMU_OPTION_OP_SET = 0
IOMMU_OPTION_OP_GET = 1


class iommu_option(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("option_id", c_uint32),
        ("op", c_uint16),
        ("__reserved", c_uint16),
        ("object_id", c_uint32),
        ("val64", c_uint64),
    )


IOMMU_OPTION = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)

# enum iommufd_vfio_ioas_op
IOMMU_VFIO_IOAS_GET = 0
IOMMU_VFIO_IOAS_SET = 1
IOMMU_VFIO_IOAS_CLEAR = 2


class iommu_vfio_ioas(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("ioas_id", c_uint32),
        ("op", c_uint16),
        ("__reserved", c_uint16),
    )


IOMMU_VFIO_IOAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS)


class iommu_ioas_change_process(Structure):
    _fields_ = (
        ("size", c_uint32),
        ("__reserved", c_uint32),
    )


IOMMU_IOAS_CHANGE_PROCESS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_CHANGE_PROCESS)

# -- Version bookkeeping ---------------------------------------------------------------------

IOCTLS: tuple[str, ...] = (
    "IOMMU_DESTROY",
    "IOMMU_IOAS_ALLOC",
    "IOMMU_IOAS_ALLOW_IOVAS",
    "IOMMU_IOAS_COPY",
    "IOMMU_IOAS_IOVA_RANGES",
    "IOMMU_IOAS_MAP",
    "IOMMU_IOAS_UNMAP",
    "IOMMU_OPTION",
    "IOMMU_VFIO_IOAS",
    "IOMMU_IOAS_MAP_FILE",
    "IOMMU_IOAS_CHANGE_PROCESS",
)

ENUM_CONSTANTS: frozenset[str] = frozenset(
    {
        "IOMMUFD_CMD_BASE",
        "IOMMUFD_CMD_DESTROY",
        "IOMMUFD_CMD_IOAS_ALLOC",
        "IOMMUFD_CMD_IOAS_ALLOW_IOVAS",
        "IOMMUFD_CMD_IOAS_COPY",
        "IOMMUFD_CMD_IOAS_IOVA_RANGES",
        "IOMMUFD_CMD_IOAS_MAP",
        "IOMMUFD_CMD_IOAS_UNMAP",
        "IOMMUFD_CMD_OPTION",
        "IOMMUFD_CMD_VFIO_IOAS",
        "IOMMUFD_CMD_IOAS_MAP_FILE",
        "IOMMUFD_CMD_IOAS_CHANGE_PROCESS",
        "IOMMU_IOAS_MAP_FIXED_IOVA",
        "IOMMU_IOAS_MAP_WRITEABLE",
        "IOMMU_IOAS_MAP_READABLE",
        "IOMMU_OPTION_RLIMIT_MODE",
        "IOMMU_OPTION_HUGE_PAGES",
        "IOMMU_OPTION_OP_SET",
        "IOMMU_OPTION_OP_GET",
        "IOMMU_VFIO_IOAS_GET",
        "IOMMU_VFIO_IOAS_SET",
        "IOMMU_VFIO_IOAS_CLEAR",
    }
)

_v6_2 = kv("6.2")
_v6_13 = kv("6.13")

# 6.2 brought the header; 6.13 added file mappings and the live-update process handover.
_ADDED_IN_6_13 = frozenset(
    {
        "IOMMUFD_CMD_IOAS_MAP_FILE",
        "IOMMUFD_CMD_IOAS_CHANGE_PROCESS",
        "IOMMU_IOAS_MAP_FILE",
        "IOMMU_IOAS_CHANGE_PROCESS",
    }
)

# Every constant above is annotated (the header is newer than 6.1), so derive the table from the
# module rather than repeat 30-odd names; the layout test checks it covers them all.
SINCE: dict[str, KernelVersion] = {
    name: (_v6_13 if name in _ADDED_IN_6_13 else _v6_2)
    for name, value in dict(globals()).items()
    if name[:1].isupper() and isinstance(value, int) and not isinstance(value, bool)
}

UNTIL: dict[str, KernelVersion] = {}

OLD_VALUES: dict[str, tuple[tuple[KernelVersion, int], ...]] = {}

STRUCT_LAYOUTS: list[Layout] = [
    Layout("iommu_destroy", iommu_destroy, since=_v6_2),
    Layout("iommu_ioas_alloc", iommu_ioas_alloc, since=_v6_2),
    Layout("iommu_iova_range", iommu_iova_range, since=_v6_2),
    Layout("iommu_ioas_iova_ranges", iommu_ioas_iova_ranges, since=_v6_2),
    Layout("iommu_ioas_allow_iovas", iommu_ioas_allow_iovas, since=_v6_2),
    Layout("iommu_ioas_map", iommu_ioas_map, since=_v6_2),
    Layout("iommu_ioas_map_file", iommu_ioas_map_file, since=_v6_13),
    Layout("iommu_ioas_copy", iommu_ioas_copy, since=_v6_2),
    Layout("iommu_ioas_unmap", iommu_ioas_unmap, since=_v6_2),
    Layout("iommu_option", iommu_option, since=_v6_2),
    Layout("iommu_vfio_ioas", iommu_vfio_ioas, since=_v6_2),
    Layout("iommu_ioas_change_process", iommu_ioas_change_process, since=_v6_13),
]
