# SPDX-License-Identifier: MIT
"""API and setup: API version, extensions, group status, containers (type1 v1/v2), SET_IOMMU,
the iommufd/cdev path, and unknown ioctls on every kind of fd."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator

import pytest

from harness.mdev import MdevDevice
from harness.uapi import (
    Container,
    Device,
    DmaBuffer,
    EventFd,
    Group,
    Iommufd,
    IommuMode,
    open_iommufd,
)
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.errnos import expected_errno
from tests.uapi.util import raises_errno

# Containers, groups and iommufd: VFIO core, type1 and iommufd answer; no driver code runs.
pytestmark = pytest.mark.core_only

TYPE1 = {"type1v1": v.VFIO_TYPE1_IOMMU, "type1v2": v.VFIO_TYPE1v2_IOMMU}
UNKNOWN_IOCTL = 0x3B00 | 99  # _IO(';', 99): below VFIO_BASE, never assigned


@pytest.fixture
def container() -> Iterator[Container]:
    util.require_mode(IommuMode.TYPE1)
    with Container.open() as opened:
        yield opened


@pytest.fixture
def group(mdev: MdevDevice) -> Iterator[Group]:
    util.require_mode(IommuMode.TYPE1)
    assert mdev.iommu_group is not None
    with Group.open(mdev.iommu_group) as opened:
        yield opened


def test_api_version(container: Container) -> None:
    assert container.api_version() == v.VFIO_API_VERSION


@pytest.mark.parametrize("iommu", TYPE1)
def test_check_extension_type1(container: Container, iommu: str) -> None:
    assert container.check_extension(TYPE1[iommu]) == 1


def test_check_extension_unknown_is_zero(container: Container) -> None:
    assert container.check_extension(0xDEAD) == 0


def test_group_viable_without_container(group: Group) -> None:
    flags = group.status()
    assert flags & v.VFIO_GROUP_FLAGS_VIABLE, f"group status {flags:#x}"
    assert not flags & v.VFIO_GROUP_FLAGS_CONTAINER_SET, f"group status {flags:#x}"


def test_group_status_argsz_too_small(group: Group) -> None:
    request = v.vfio_group_status(argsz=ctypes.sizeof(v.vfio_group_status) - 1)
    with raises_errno(errno.EINVAL):
        group.ioctl(v.VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS", request)


def test_group_set_and_unset_container(group: Group, container: Container) -> None:
    group.set_container(container)
    assert group.has_container
    group.unset_container()
    assert not group.has_container


def test_group_open_twice_busy(group: Group, mdev: MdevDevice) -> None:
    assert mdev.iommu_group is not None
    with raises_errno(errno.EBUSY):
        Group.open(mdev.iommu_group).close()


def test_group_set_container_twice(group: Group, container: Container) -> None:
    group.set_container(container)
    with Container.open() as other, raises_errno(errno.EINVAL):
        group.set_container(other)


def test_group_set_container_bad_fd(group: Group) -> None:
    with raises_errno(errno.EBADF):
        group.set_container(-1)


def test_group_set_container_not_a_container(group: Group) -> None:
    with EventFd() as eventfd, raises_errno(expected_errno("set_container_not_a_container")):
        group.set_container(eventfd.fd)


def test_group_unset_container_without_one(group: Group) -> None:
    with raises_errno(errno.EINVAL):
        group.unset_container()


def test_group_get_device_fd_without_container(group: Group, mdev: MdevDevice) -> None:
    with raises_errno(errno.EINVAL):
        group.get_device_fd(mdev.uuid)


def test_group_get_device_fd_unknown_name(group: Group, container: Container) -> None:
    group.set_container(container)
    container.set_iommu()
    with raises_errno(errno.ENODEV):
        group.get_device_fd("00000000-0000-0000-0000-000000000000")


@pytest.mark.parametrize("iommu", TYPE1)
def test_set_iommu_type1(group: Group, container: Container, mdev: MdevDevice, iommu: str) -> None:
    group.set_container(container)
    container.set_iommu(TYPE1[iommu])
    info = container.iommu_info()
    assert info.flags & v.VFIO_IOMMU_INFO_PGSIZES
    assert info.iova_pgsizes & (os.sysconf("SC_PAGE_SIZE")), f"pgsizes {info.iova_pgsizes:#x}"
    # An emulated-IOMMU-only container: any IOVA is valid, so no IOVA_RANGE capability.
    assert info.iova_ranges is None
    assert info.dma_avail is not None and info.dma_avail > 0
    with group.open_device(mdev.uuid) as device:
        assert device.info().num_regions > 0


def test_set_iommu_without_group(container: Container) -> None:
    with raises_errno(errno.EINVAL):
        container.set_iommu()


def test_set_iommu_unknown_type(group: Group, container: Container) -> None:
    group.set_container(container)
    with raises_errno(errno.ENODEV):
        container.set_iommu(0xDEAD)
    container.set_iommu()  # a failed SET_IOMMU leaves the container usable


def test_set_iommu_twice(group: Group, container: Container) -> None:
    group.set_container(container)
    container.set_iommu()
    with raises_errno(errno.EINVAL):
        container.set_iommu()


def test_iommu_ioctl_before_set_iommu(group: Group, container: Container) -> None:
    group.set_container(container)
    with DmaBuffer(4096) as buffer, raises_errno(errno.EINVAL):
        container.map_buffer(util.IOVA, buffer)


def test_type1_info_argsz_too_small(group: Group, container: Container) -> None:
    group.set_container(container)
    container.set_iommu()
    request = v.vfio_iommu_type1_info(argsz=8)  # below iova_pgsizes
    with raises_errno(errno.EINVAL):
        container.ioctl(v.VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", request)


def test_unknown_ioctl_container_before_set_iommu(container: Container) -> None:
    with raises_errno(errno.EINVAL):
        container.ioctl(UNKNOWN_IOCTL, "unknown ioctl")


def test_unknown_ioctl_container(group: Group, container: Container) -> None:
    group.set_container(container)
    container.set_iommu()
    with raises_errno(errno.ENOTTY):
        container.ioctl(UNKNOWN_IOCTL, "unknown ioctl")


def test_unknown_ioctl_group(group: Group) -> None:
    with raises_errno(errno.ENOTTY):
        group.ioctl(UNKNOWN_IOCTL, "unknown ioctl")


# -- iommufd / vfio cdev ----------------------------------------------------------------------


@pytest.fixture
def cdev_path(mdev: MdevDevice) -> str:
    util.require_mode(IommuMode.IOMMUFD)
    cdev = mdev.vfio_cdev
    if cdev is None:
        pytest.skip(util.NO_CDEV)
    return str(cdev)


def test_iommufd_open_bind_attach(cdev_path: str) -> None:
    with open_iommufd(cdev_path) as opened:
        assert opened.device.info().num_regions > 0


def test_cdev_ioctl_before_bind(cdev_path: str) -> None:
    with Device.open_cdev(cdev_path) as device, raises_errno(errno.EINVAL):
        device.info()


def test_cdev_bind_twice(cdev_path: str) -> None:
    with Iommufd.open() as ctx, Device.open_cdev(cdev_path) as device:
        device.bind_iommufd(ctx)
        with raises_errno(errno.EINVAL):
            device.bind_iommufd(ctx)


def test_cdev_bind_negative_fd(cdev_path: str) -> None:
    # Rejected with the other argument checks, before any fd lookup (measured on 6.12).
    with Device.open_cdev(cdev_path) as device, raises_errno(errno.EINVAL):
        device.bind_iommufd(-1)


def test_cdev_bind_fd_that_is_not_open(cdev_path: str) -> None:
    unused = 1 << 20  # above any open-files limit: no file can have this number
    with Device.open_cdev(cdev_path) as device, raises_errno(errno.EBADF):
        device.bind_iommufd(unused)


def test_cdev_bind_fd_that_is_not_an_iommufd(cdev_path: str) -> None:
    with Device.open_cdev(cdev_path) as device, raises_errno(errno.EBADFD):
        device.bind_iommufd(device.fd)  # (measured on 6.12)


def test_cdev_attach_unknown_ioas(cdev_path: str) -> None:
    with Iommufd.open() as ctx, Device.open_cdev(cdev_path) as device:
        device.bind_iommufd(ctx)
        with raises_errno(errno.ENOENT):
            device.attach_pt(0xFFFF)
