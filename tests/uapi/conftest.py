# SPDX-License-Identifier: MIT
"""Fixtures of the UAPI conformance suite; it runs inside a guest or on a host with the device.

The device under test: HARNESS_MDEV_UUID (an existing mdev, left alone), else a fresh mdev of
HARNESS_MDEV_TYPE (on HARNESS_MDEV_PARENT, inferred when one parent offers the type; default:
our module's small type) created for each test and removed after it. A device that is not there
fails every test, saying what the host offers (harness.mdev.choice): it never skips. `opened` is
that device opened in each IOMMU mode (type1 container, iommufd + vfio cdev). Tests marked
`refdev` need our reference device (the device's bound driver is ours) and skip on any other.

Every report is labelled for harness.plugin.verdicts: its area (the test file), whether it
reaches the driver (tests marked `core_only` exercise only VFIO core, type1 or the VFS), and a
failure's severity (verdict.py: safety, uapi or missing).
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Generator, Iterator

import pytest

from harness.mdev import MdevDevice, MdevSysfs, MdevType
from harness.mdev.choice import DeviceChoiceError, DeviceRequest, choose_device
from harness.refdev import RefDevice
from harness.refdev import contract as c
from harness.uapi import IommuMode, OpenDevice
from harness.uapi.raw.versions import KernelVersion
from tests.uapi import util
from tests.uapi.verdict import area_of, severity_of

OUR_DEVICE = DeviceRequest(c.SMALL.type_id, c.PARENT_NAME)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "refdev: needs the reference device (kmod/, vfio_harness_mdev): its registers, DMA "
        "engine or exact layout; skipped on any other device",
    )
    config.addinivalue_line(
        "markers",
        "core_only: exercises only VFIO core, type1, iommufd or the VFS, never the driver's "
        "code (counted apart: it says nothing about the driver)",
    )
    # The harness's plugin acts on it on the host; registered here for the guest's pytest.
    config.addinivalue_line("markers", "guest_timeout(seconds): this test's own time limit")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    # On the item too, so that later reports carry them: JUnit writes the teardown report's.
    labels: list[tuple[str, object]] = []
    if report.when == "setup":
        reaches = item.get_closest_marker("core_only") is None
        labels += [
            ("area", area_of(item.path.name)),
            ("reaches_driver", "yes" if reaches else "no"),
        ]
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "iommu_mode" in callspec.params:
            labels.append(("iommu_mode", str(callspec.params["iommu_mode"])))
    if report.failed and call.excinfo is not None:
        labels.append(("severity", severity_of(call.excinfo.value)))
    item.user_properties.extend(labels)
    report.user_properties.extend(labels)


@pytest.fixture(scope="session")
def kernel() -> KernelVersion:
    return KernelVersion.parse(os.uname().release)


@pytest.fixture(scope="session")
def sysfs() -> MdevSysfs:
    return MdevSysfs()


@pytest.fixture(scope="session")
def chosen(sysfs: MdevSysfs) -> tuple[MdevType, MdevDevice | None]:
    """The type under test, and the device HARNESS_MDEV_UUID names (None: create one)."""
    try:
        result = choose_device(sysfs, DeviceRequest.from_env(), OUR_DEVICE)
    except DeviceChoiceError as exc:
        pytest.fail(f"no device to test: {exc}", pytrace=False)
    return result.mdev_type, result.existing


@pytest.fixture(scope="session")
def mdev_type(chosen: tuple[MdevType, MdevDevice | None]) -> MdevType:
    return chosen[0]


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
def mdev(
    chosen: tuple[MdevType, MdevDevice | None],
    make_mdev: Callable[[], MdevDevice],
    request: pytest.FixtureRequest,
) -> MdevDevice:
    device = _device(chosen, make_mdev)
    request.node.user_properties.append(("driver", device.driver or "unbound"))
    return device


def _device(
    chosen: tuple[MdevType, MdevDevice | None], make_mdev: Callable[[], MdevDevice]
) -> MdevDevice:
    mdev_type, existing = chosen
    if existing is not None:
        return existing
    available = mdev_type.available_instances
    if available < 1:
        pytest.fail(
            f"{mdev_type.type_id} has no instance left at the start of this test "
            f"(available_instances {available}): an earlier test's devices were not released",
            pytrace=False,
        )
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


@pytest.fixture(autouse=True)
def _refdev_only(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("refdev") is None:
        return
    mdev_type: MdevType = request.getfixturevalue("mdev_type")
    device: MdevDevice = request.getfixturevalue("mdev")
    driver = device.driver
    if driver != c.MODULE_NAME or mdev_type.parent_name != c.PARENT_NAME:
        pytest.skip(
            f"needs the reference device (driver {c.MODULE_NAME}); {mdev_type.type_id} is "
            f"bound to {driver or 'no driver'}"
        )
