# SPDX-License-Identifier: MIT
"""The mdev lifecycle through sysfs: types, available_instances, create/remove and their
errors (EINVAL, EEXIST, ENOSPC), many devices at once, and concurrent opens."""

from __future__ import annotations

import contextlib
import errno
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from harness.mdev import MdevDevice, MdevSysfs, MdevType
from harness.refdev import RefDevice
from harness.refdev import contract as c
from harness.refdev import registers as r
from harness.uapi import Container, Device, Group, Iommufd, IommuMode, OpenDevice
from tests.uapi import util
from tests.uapi.util import raises_errno

MakeMdev = Callable[[], MdevDevice]


def test_type_attributes(mdev_type: MdevType) -> None:
    assert mdev_type.device_api in ("vfio-pci", "vfio-platform", "vfio-ccw", "vfio-ap")
    assert mdev_type.available_instances >= 0
    assert mdev_type.name  # since 6.1 the core always has one


def test_device_sysfs_links(mdev: MdevDevice, mdev_type: MdevType) -> None:
    assert mdev.mdev_type.type_id == mdev_type.type_id
    assert mdev.is_bound
    assert mdev.iommu_group is not None
    assert mdev.vfio_device_name is not None


def test_available_instances_follow_create_and_remove(
    mdev_type: MdevType, make_mdev: MakeMdev
) -> None:
    before = mdev_type.available_instances
    if before < 1:
        pytest.skip(f"{mdev_type.type_id} has no available instance")
    device = make_mdev()
    assert mdev_type.available_instances == before - 1
    assert device.uuid in mdev_type.device_uuids()
    device.remove()
    assert not device.exists
    assert mdev_type.available_instances == before


@pytest.mark.core_only
@pytest.mark.parametrize(
    "text",
    ["not-a-uuid", "83b8f4f2-509f-382f-3c1e-e6bfe0fa10", "83b8f4f2509f382f3c1ee6bfe0fa1001"],
)
def test_create_malformed_uuid(mdev_type: MdevType, text: str) -> None:
    with raises_errno(errno.EINVAL):
        mdev_type.create(text)


@pytest.mark.core_only
def test_create_duplicate_uuid(mdev: MdevDevice, mdev_type: MdevType) -> None:
    if mdev_type.available_instances < 1:
        pytest.skip(f"{mdev_type.type_id} has no available instance")
    with raises_errno(errno.EEXIST):
        mdev_type.create(mdev.uuid)


@pytest.mark.core_only
def test_create_upper_case_uuid_is_the_same_device(mdev: MdevDevice, mdev_type: MdevType) -> None:
    if mdev_type.available_instances < 1:
        pytest.skip(f"{mdev_type.type_id} has no available instance")
    with raises_errno(errno.EEXIST):
        mdev_type.create(mdev.uuid.upper())


@pytest.mark.core_only
def test_remove_twice(make_mdev: MakeMdev, sysfs: MdevSysfs) -> None:
    device = make_mdev()
    remove = device.path / "remove"
    device.remove()
    with raises_errno(errno.ENOENT):
        remove.write_text("1")


@pytest.mark.core_only
def test_remove_zero_keeps_the_device(mdev: MdevDevice) -> None:
    (mdev.path / "remove").write_text("0")
    assert mdev.exists


@pytest.mark.core_only
def test_remove_garbage(mdev: MdevDevice) -> None:
    with raises_errno(errno.EINVAL):
        (mdev.path / "remove").write_text("yes")
    assert mdev.exists


@pytest.mark.refdev
def test_refdev_types(sysfs: MdevSysfs, mdev: MdevDevice) -> None:
    parent = sysfs.parent(c.PARENT_NAME)
    assert parent.type_ids() == sorted(t.type_id for t in c.TYPES)
    for ref_type in c.TYPES:
        mtype = parent.type(ref_type.type_id)
        assert mtype.name == ref_type.name
        assert mtype.device_api == c.DEVICE_API


def test_create_beyond_available(
    mdev: MdevDevice, mdev_type: MdevType, make_mdev: MakeMdev
) -> None:
    """Once available_instances reads 0, a create fails: ENOSPC from a driver that counts
    itself (ours, mtty), EUSERS from the mdev core for one that relies on max_instances."""
    available = mdev_type.available_instances
    if available > 64:
        pytest.skip(f"{mdev_type.type_id} offers {available} more instances: too many to fill")
    for _ in range(available):
        make_mdev()
    assert mdev_type.available_instances == 0
    with raises_errno(errno.ENOSPC, errno.EUSERS):
        mdev_type.create(uuid.uuid4())


def test_many_devices_open_at_once(
    mdev_type: MdevType, make_mdev: MakeMdev, iommu_mode: IommuMode
) -> None:
    count = min(mdev_type.available_instances, 8)
    if count < 2:
        pytest.skip(f"{mdev_type.type_id} allows fewer than 2 more instances")
    devices = [make_mdev() for _ in range(count)]
    assert len({device.iommu_group for device in devices}) == count, "shared IOMMU groups"
    opened: list[OpenDevice] = []
    try:
        for device in devices:
            opened.append(util.open_device(device, iommu_mode))
        for each in opened:
            assert each.device.info().num_regions > 0
    finally:
        for each in opened:
            each.close()


def test_concurrent_opens(mdev_type: MdevType, make_mdev: MakeMdev, iommu_mode: IommuMode) -> None:
    count = min(mdev_type.available_instances, 4)
    if count < 2:
        pytest.skip(f"{mdev_type.type_id} allows fewer than 2 more instances")
    devices = [make_mdev() for _ in range(count)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def work(device: MdevDevice) -> None:
        try:
            barrier.wait(10)
            for _ in range(5):
                with util.open_device(device, iommu_mode) as each:
                    for index in range(each.device.info().num_regions):
                        each.device.region_info(index)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(device,)) for device in devices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


@contextlib.contextmanager
def two_device_fds(mdev: MdevDevice) -> Iterator[tuple[Device, Device]]:
    """Two fds of the device from its group (type1 mode: only the group path allows that)."""
    util.require_mode(IommuMode.TYPE1)
    assert mdev.iommu_group is not None
    with Container.open() as container, Group.open(mdev.iommu_group) as group:
        group.set_container(container)
        container.set_iommu()
        with group.open_device(mdev.uuid) as first, group.open_device(mdev.uuid) as second:
            yield first, second


def test_two_device_fds_from_one_group(mdev: MdevDevice) -> None:
    with two_device_fds(mdev) as (first, second):
        first.close()  # the device stays open through the other fd
        assert second.info().num_regions > 0


@pytest.mark.refdev
def test_two_device_fds_share_the_device(mdev: MdevDevice) -> None:
    with two_device_fds(mdev) as (first, second):
        RefDevice(first).write32(r.REG_SCRATCH0, 0x5A5A)
        # The second open does not reset what the first one set up.
        assert RefDevice(second).read32(r.REG_SCRATCH0) == 0x5A5A


@pytest.mark.core_only
def test_second_cdev_bind_refused(mdev: MdevDevice) -> None:
    util.require_mode(IommuMode.IOMMUFD)
    with util.open_device(mdev, IommuMode.IOMMUFD), Iommufd.open() as ctx:
        cdev = mdev.vfio_cdev
        assert cdev is not None
        with Device.open_cdev(str(cdev)) as second, raises_errno(errno.EINVAL):
            second.bind_iommufd(ctx)  # only the group path opens a device twice
