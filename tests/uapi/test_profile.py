# SPDX-License-Identifier: MIT
"""What the driver offers (harness.uapi.profile), recorded with the results, and cross-checked:
what the type says in sysfs, what the device flags say and what its regions and IRQs do must
agree. (vfio-harness run prints the same profile before the suite, with --expect's gaps.)"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from harness.mdev import MdevType
from harness.uapi import OpenDevice
from harness.uapi.profile import DeviceProfile
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.verdict import MissingCapabilityError

DEVICE_APIS = {  # device_api in sysfs -> the flag VFIO_DEVICE_GET_INFO must set
    "vfio-pci": v.VFIO_DEVICE_FLAGS_PCI,
    "vfio-platform": v.VFIO_DEVICE_FLAGS_PLATFORM,
    "vfio-amba": v.VFIO_DEVICE_FLAGS_AMBA,
    "vfio-ccw": v.VFIO_DEVICE_FLAGS_CCW,
    "vfio-ap": v.VFIO_DEVICE_FLAGS_AP,
}
API_FLAGS = sum(DEVICE_APIS.values())


@pytest.fixture
def profile(opened: OpenDevice, mdev_type: MdevType) -> DeviceProfile:
    return DeviceProfile.read(opened.device, mdev_type.device_api)


def test_the_profile_is_recorded(
    profile: DeviceProfile, record_property: Callable[[str, object], None]
) -> None:
    record_property("driver_profile", json.dumps(profile.as_dict(), sort_keys=True))
    missing = sorted(util.expected() - profile.capabilities())
    if missing:
        raise MissingCapabilityError(
            f"the driver lacks {', '.join(missing)}, which --expect asked for"
        )


def test_device_api_matches_the_device_flags(profile: DeviceProfile) -> None:
    flag = DEVICE_APIS.get(profile.device_api)
    if flag is None:
        pytest.skip(f"device_api {profile.device_api!r} has no VFIO_DEVICE_FLAGS_* to match")
    assert profile.flags & API_FLAGS == flag, (
        f"device_api is {profile.device_api}, but the device flags are {profile.flags:#x}"
    )


def test_sparse_areas_lie_inside_their_region(profile: DeviceProfile) -> None:
    failures = util.Failures()
    for region in profile.regions:
        for offset, size in region.mmap_areas:
            with failures.check(f"region {region.index} area {offset:#x}+{size:#x}"):
                assert size > 0, "an empty mmap area"
                assert offset + size <= region.size, f"past the region's {region.size:#x} bytes"
    failures.verify("no region has mmap areas")


def test_readable_regions_read(opened: OpenDevice, profile: DeviceProfile) -> None:
    """A region that says READ answers a read of its first byte: a flag that lies shows."""
    failures = util.Failures()
    for region in profile.regions:
        if region.size and region.readable:
            with failures.check(f"region {region.index}"):
                assert len(os.pread(opened.device.fd, 1, region.offset)) == 1
    failures.verify("the device has no readable region")


def test_irq_counts_fit_their_index(profile: DeviceProfile) -> None:
    """INTx has at most one vector; ERR and REQ at most one each (vfio-pci's own limits)."""
    if not profile.is_pci:
        pytest.skip("not a vfio-pci device")
    failures = util.Failures()
    single = {v.VFIO_PCI_INTX_IRQ_INDEX, v.VFIO_PCI_ERR_IRQ_INDEX, v.VFIO_PCI_REQ_IRQ_INDEX}
    for irq in profile.irqs:
        with failures.check(f"IRQ {irq.index}"):
            if irq.index in single:
                assert irq.count <= 1, f"{irq.count} vectors"
    failures.verify("the device has no IRQ indexes")
