# SPDX-License-Identifier: MIT
"""VFIO and iommufd user API for Python.

Two layers:
- `harness.uapi.raw`: ctypes structs, constants and ioctl numbers with their C names
  (`raw/vfio.py` mirrors linux/vfio.h, `raw/iommufd.py` linux/iommufd.h; `raw/versions.py`
  records which kernel added what).
- the safe wrappers here, one module per object: `container` (type1), `group`, `iommufd`,
  `device`, `region`, `irq`, `migration`, `dma` (page-aligned buffers), and `open_device`,
  the one interface over the type1 and iommufd ways of opening a device.
Errors are `VfioError`/`IoctlError` (OSError subclasses naming the call, carrying errno).
"""

from harness.uapi.container import Container, IovaRange, Type1Info
from harness.uapi.device import Device, DeviceInfo
from harness.uapi.dma import PAGE_SIZE, DmaBuffer
from harness.uapi.errors import CapabilityChainError, IoctlError, ShortTransferError, VfioError
from harness.uapi.group import Group
from harness.uapi.iommufd import Iommufd, IommufdRange
from harness.uapi.irq import EventFd, IrqIndex, IrqInfo
from harness.uapi.migration import Migration, MigrationDataFd, MigState
from harness.uapi.open_device import (
    DmaMapper,
    IommufdMapper,
    IommuMode,
    OpenDevice,
    Type1Mapper,
    open_iommufd,
    open_type1,
)
from harness.uapi.region import Region, RegionInfo, RegionType, SparseArea

__all__ = [
    "PAGE_SIZE",
    "CapabilityChainError",
    "Container",
    "Device",
    "DeviceInfo",
    "DmaBuffer",
    "DmaMapper",
    "EventFd",
    "Group",
    "IoctlError",
    "IommuMode",
    "Iommufd",
    "IommufdMapper",
    "IommufdRange",
    "IovaRange",
    "IrqIndex",
    "IrqInfo",
    "MigState",
    "Migration",
    "MigrationDataFd",
    "OpenDevice",
    "Region",
    "RegionInfo",
    "RegionType",
    "ShortTransferError",
    "SparseArea",
    "Type1Info",
    "Type1Mapper",
    "VfioError",
    "open_iommufd",
    "open_type1",
]
