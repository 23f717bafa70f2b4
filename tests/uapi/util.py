# SPDX-License-Identifier: MIT
"""Helpers shared by the conformance tests: opening a device per IOMMU mode, errno checks."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
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
from tests.uapi.verdict import MissingCapabilityError, SafetyError

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
EXPECT_ENV = "HARNESS_EXPECT"
IOVA = 0x1000_0000  # where tests map their buffers


def require_mode(mode: IommuMode) -> None:
    """Skip unless this kernel offers `mode`."""
    if mode is IommuMode.IOMMUFD and not os.path.exists(IOMMUFD_PATH):
        pytest.skip(NO_IOMMUFD)
    if mode is IommuMode.TYPE1 and not os.path.exists(CONTAINER_PATH):
        pytest.skip(NO_CONTAINER)


def any_mode() -> IommuMode:
    """An IOMMU mode this kernel offers (type1 where it exists), for tests of the device
    itself rather than of the mode."""
    return IommuMode.TYPE1 if os.path.exists(CONTAINER_PATH) else IommuMode.IOMMUFD


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
def raises_errno(*expected: int, accepted: type[AssertionError] = AssertionError) -> Iterator[None]:
    """The block must fail with OSError of one of `expected` (VfioError, IoctlError and
    MdevError are). Succeeding raises `accepted` (SafetyError for an out-of-range access)."""
    names = " or ".join(errno_name(e) for e in expected)
    try:
        yield
    except OSError as exc:
        assert exc.errno in expected, f"expected {names}, got {errno_name(exc.errno or 0)}: {exc}"
        return
    raise accepted(f"succeeded; expected {names}")


def refused_out_of_range(*expected: int) -> contextlib.AbstractContextManager[None]:
    """An access outside what the device has: a driver that performs it is unsafe."""
    return raises_errno(*expected, accepted=SafetyError)


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


def mappable_regions(device: Device) -> list[RegionInfo]:
    """The regions with an mmap area, or a skip (or failure, when --expect mmap) if none."""
    found = [info for info in regions(device) if info.size and info.mmap_areas()]
    require("mmap", bool(found), "no region of the device is mmap-able")
    return found


def rw_region(device: Device, *, mmap: bool = False) -> RegionInfo:
    """The first readable and writable region (mmap-able too, if asked); skip if none."""
    for info in regions(device):
        if info.size and info.readable and info.writable and (info.mmap_areas() or not mmap):
            return info
    if mmap:
        require("mmap", False, "the device has no read/write mmap-able region")
    require("rw-region", False, "the device has no read/write region")
    raise AssertionError("unreachable")


def expected() -> frozenset[str]:
    """The capabilities --expect names (HARNESS_EXPECT, harness.uapi.profile.CAPABILITIES)."""
    return frozenset(n.strip() for n in os.environ.get(EXPECT_ENV, "").split(",") if n.strip())


def require(capability: str, offered: bool, why: str) -> None:
    """Go on if the driver offers `capability`; else skip, or fail as *missing* when --expect
    names it (a vendor who knows their driver must offer it)."""
    if offered:
        return
    if capability in expected():
        raise MissingCapabilityError(
            f"the driver lacks {capability}, which --expect asked for: {why}"
        )
    pytest.skip(why)


class Failures:
    """Checks over several regions or indexes that all run: each failure is noted, and the
    test fails at the end with every one of them (a loop that stopped at the first would
    never exercise the rest). `checked` counts what was looked at, so a loop over nothing
    cannot pass."""

    def __init__(self) -> None:
        self.found: list[tuple[str, AssertionError]] = []
        self.checked = 0

    @contextlib.contextmanager
    def check(self, what: str) -> Iterator[None]:
        self.checked += 1
        try:
            yield
        except AssertionError as exc:
            self.found.append((what, exc))

    def verify(self, nothing: str) -> None:
        """Fail with every failure (the worst severity first); skip when nothing was checked."""
        if not self.checked:
            pytest.skip(nothing)
        if self.found:
            self.found.sort(key=lambda pair: not isinstance(pair[1], SafetyError))
            text = "\n".join(f"{what}: {exc}" for what, exc in self.found)
            raise type(self.found[0][1])(f"{len(self.found)} of {self.checked} failed:\n{text}")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value


def libc_mmap(fd: int, offset: int, length: int, flags: int = mmap.MAP_SHARED) -> int:
    """mmap(2) straight from libc, read-write: the address, or -errno. Python's mmap fixes up
    sizes and keeps a dup of the fd, which would hold the file open on its own."""
    address = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, offset)
    if address == MAP_FAILED or address is None:
        return -ctypes.get_errno()
    return int(address)


def libc_munmap(address: int, length: int) -> None:
    if _libc.munmap(address, length) != 0:
        raise OSError(ctypes.get_errno(), f"munmap({address:#x}, {length:#x})")


def pinned_kib() -> int:
    """KiB this process has pinned: VmLck (where type1 accounts a vendor driver's pins) plus
    VmPin (where iommufd accounts them)."""
    total = 0
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmLck:", "VmPin:")):
                total += int(line.split()[1])
    return total
