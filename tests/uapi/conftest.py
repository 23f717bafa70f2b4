# SPDX-License-Identifier: MIT
"""Fixtures of the UAPI conformance suite; it runs inside a guest or on a host with the device.

The device under test: HARNESS_MDEV_UUID (an existing mdev, left alone), else a fresh mdev of
HARNESS_MDEV_TYPE on HARNESS_MDEV_PARENT (default: our module's small type) created for each
test and removed after it. `opened` is that device opened in each IOMMU mode (type1 container,
iommufd + vfio cdev). Tests marked `refdev` need our reference device and skip on any other.
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from harness.mdev import MdevDevice, MdevError, MdevSysfs, MdevType
from harness.refdev import RefDevice
from harness.refdev import registers as r
from harness.uapi import IommuMode, OpenDevice
from harness.uapi.raw.versions import KernelVersion
from tests.uapi import util

DEFAULT_TYPE = "vfio_harness_mdev-small"
DEFAULT_PARENT = "vfio_harness"

_vendor_ids: dict[str, int | None] = {}  # mdev type directory -> PCI vendor ID (None: not PCI)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "refdev: needs the reference device (kmod/, vfio_harness_mdev): its registers, DMA "
        "engine or exact layout; skipped on any other device",
    )


@pytest.fixture(scope="session")
def kernel() -> KernelVersion:
    return KernelVersion.parse(os.uname().release)


@pytest.fixture(scope="session")
def sysfs() -> MdevSysfs:
    return MdevSysfs()


@pytest.fixture(scope="session")
def mdev_type(sysfs: MdevSysfs) -> MdevType:
    """The type under test (that of HARNESS_MDEV_UUID when one is given)."""
    existing = os.environ.get("HARNESS_MDEV_UUID")
    try:
        if existing:
            return sysfs.device(existing).mdev_type
        type_id = os.environ.get("HARNESS_MDEV_TYPE", DEFAULT_TYPE)
        parent = os.environ.get("HARNESS_MDEV_PARENT", DEFAULT_PARENT)
        return sysfs.find_type(type_id, parent)
    except MdevError as exc:
        pytest.skip(f"no device to test: {exc}")


def _remove(device: MdevDevice) -> None:
    gc.collect()  # a leaked wrapper's fd would make the removal block
    device.remove(missing_ok=True)


@pytest.fixture
def make_mdev(mdev_type: MdevType) -> Iterator[Callable[[], MdevDevice]]:
    """Creates extra devices of the type under test; all are removed after the test."""
    created: list[MdevDevice] = []

    def make() -> MdevDevice:
        device = mdev_type.create(uuid.uuid4())
        created.append(device)
        return device

    yield make
    for device in reversed(created):
        _remove(device)


@pytest.fixture
def mdev(sysfs: MdevSysfs, mdev_type: MdevType, make_mdev: Callable[[], MdevDevice]) -> MdevDevice:
    existing = os.environ.get("HARNESS_MDEV_UUID")
    if existing:
        return sysfs.device(existing)
    if mdev_type.available_instances < 1:
        pytest.skip(f"{mdev_type.type_id} has no available instance")
    return make_mdev()


@pytest.fixture(params=[IommuMode.TYPE1, IommuMode.IOMMUFD], ids=str)
def iommu_mode(request: pytest.FixtureRequest) -> IommuMode:
    mode = IommuMode(request.param)
    util.require_mode(mode)
    return mode


@pytest.fixture
def opened(mdev: MdevDevice, iommu_mode: IommuMode) -> Iterator[OpenDevice]:
    with util.open_device(mdev, iommu_mode) as device:
        yield device


@pytest.fixture
def ref(opened: OpenDevice) -> RefDevice:
    return RefDevice(opened.device)


def _vendor_id(mdev: MdevDevice) -> int | None:
    key = str(mdev.mdev_type.path)
    if key not in _vendor_ids:
        mode = IommuMode.TYPE1 if os.path.exists("/dev/vfio/vfio") else IommuMode.IOMMUFD
        with util.open_device(mdev, mode) as device:
            if not device.device.info().is_pci:
                _vendor_ids[key] = None
            else:
                config = device.device.region(util.CONFIG)
                _vendor_ids[key] = config.read_int(0, 2)
    return _vendor_ids[key]


@pytest.fixture(autouse=True)
def _refdev_only(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("refdev") is None:
        return
    device: MdevDevice = request.getfixturevalue("mdev")
    vendor = _vendor_id(device)
    if vendor != r.PCI_VENDOR_ID:
        shown = "not a PCI device" if vendor is None else f"vendor ID {vendor:#06x}"
        pytest.skip(
            f"needs the reference device (vendor ID {r.PCI_VENDOR_ID:#06x}); "
            f"{device.mdev_type.type_id} is {shown}"
        )
