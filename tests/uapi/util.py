# SPDX-License-Identifier: MIT
"""Helpers shared by the conformance tests: opening a device per IOMMU mode, errno checks."""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

import pytest

from harness.mdev import MdevDevice
from harness.uapi import PAGE_SIZE, IommuMode, OpenDevice, SparseArea, open_iommufd, open_type1
from harness.uapi.device import Device
from harness.uapi.errors import errno_name
from harness.uapi.open_device import Type1Mapper
from harness.uapi.raw import vfio as v
from harness.uapi.region import RegionInfo

CONTAINER_PATH = "/dev/vfio/vfio"
IOMMUFD_PATH = "/dev/iommu"
NO_IOMMUFD = "kernel built without CONFIG_IOMMUFD (no /dev/iommu)"
NO_CONTAINER = "kernel built without the VFIO container (no /dev/vfio/vfio)"
NO_CDEV = "kernel built without CONFIG_VFIO_DEVICE_CDEV (the device has no vfio cdev)"

__all__ = [
    "PAGE_SIZE",
    "SparseArea",
]

CONFIG = v.VFIO_PCI_CONFIG_REGION_INDEX
IOVA = 0x1000_0000  # where tests map their buffers


def require_mode(mode: IommuMode) -> None:
    """Skip unless this kernel offers `mode`."""
    if mode is IommuMode.IOMMUFD and not os.path.exists(IOMMUFD_PATH):
        pytest.skip(NO_IOMMUFD)
    if mode is IommuMode.TYPE1 and not os.path.exists(CONTAINER_PATH):
        pytest.skip(NO_CONTAINER)


def open_device(mdev: MdevDevice, mode: IommuMode) -> OpenDevice:
    if mode is IommuMode.IOMMUFD:
        cdev = mdev.vfio_cdev
        if cdev is None:
            pytest.skip(NO_CDEV)
        return open_iommufd(str(cdev))
    group = mdev.iommu_group
    assert group is not None, f"mdev {mdev.uuid} has no IOMMU group"
    return open_type1(group, mdev.uuid)


def type1(opened: OpenDevice) -> Type1Mapper:
    """The type1 mapper, or a skip for tests of type1-only ioctls."""
    if not isinstance(opened.dma, Type1Mapper):
        pytest.skip("a VFIO type1 container ioctl: not applicable to iommufd")
    return opened.dma


@contextlib.contextmanager
def raises_errno(expected: int) -> Iterator[None]:
    """The block must fail with OSError `expected` (VfioError/IoctlError/MdevError are)."""
    with pytest.raises(OSError) as caught:
        yield
    got = caught.value.errno
    assert got == expected, (
        f"expected {errno_name(expected)}, got {errno_name(got or 0)}: {caught.value}"
    )


def raw_info(
    device: Device,
    request: int,
    name: str,
    struct: type[ctypes.Structure],
    argsz: int,
    **fields: int,
) -> tuple[ctypes.Structure, bytes]:
    """An info ioctl with a buffer of exactly `argsz` bytes (at least the struct's size)."""
    buffer = ctypes.create_string_buffer(max(argsz, ctypes.sizeof(struct)))
    header = struct.from_buffer(buffer)
    header.argsz = argsz
    for key, value in fields.items():
        setattr(header, key, value)
    del header
    device.ioctl(request, name, buffer)
    return struct.from_buffer_copy(buffer.raw[: ctypes.sizeof(struct)]), buffer.raw


def regions(device: Device) -> list[RegionInfo]:
    """Every region the device reports, in index order."""
    return [device.region_info(index) for index in range(device.info().num_regions)]


def rw_region(device: Device, *, mmap: bool = False) -> RegionInfo:
    """The first readable and writable region (mmap-able too, if asked); skip if none."""
    for info in regions(device):
        if info.size and info.readable and info.writable and (info.mmap_areas() or not mmap):
            return info
    pytest.skip(f"the device has no read/write{' mmap-able' if mmap else ''} region")
