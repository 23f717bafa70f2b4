# SPDX-License-Identifier: MIT
"""Choosing the device under test fails closed: a name that matches nothing, or a type with no
instance left, is an error that lists what the host offers; the parent is inferred."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.mdev import MdevSysfs
from harness.mdev.choice import DeviceChoiceError, DeviceRequest, choose_device, offered
from harness.mdev.fake import FakeMdevTree, FakeParentSpec, FakeTypeSpec

MTTY = FakeParentSpec(types=(FakeTypeSpec("1"), FakeTypeSpec("2")), capacity=2)
OURS = DeviceRequest("vfio_harness_mdev-small", "vfio_harness")


@pytest.fixture
def sysfs(tmp_path: Path) -> MdevSysfs:
    return FakeMdevTree(tmp_path, [MTTY]).sysfs()


def test_the_parent_is_inferred_from_the_type(sysfs: MdevSysfs) -> None:
    chosen = choose_device(sysfs, DeviceRequest("mtty-2"), OURS)
    assert (chosen.mdev_type.parent_name, chosen.mdev_type.type_id) == ("mtty", "mtty-2")
    assert chosen.existing is None


def test_a_typo_lists_what_the_host_offers(sysfs: MdevSysfs) -> None:
    with pytest.raises(
        DeviceChoiceError,
        match=r"no mdev type mtty2: this host offers parent mtty: mtty-1 \(2 available\), mtty-2",
    ):
        choose_device(sysfs, DeviceRequest("mtty2"), OURS)
    with pytest.raises(DeviceChoiceError, match="no mdev type mtty-2 on parent vfio_harness"):
        choose_device(sysfs, DeviceRequest("mtty-2", "vfio_harness"), OURS)


def test_nothing_named_means_our_default_and_says_so_when_absent(sysfs: MdevSysfs) -> None:
    with pytest.raises(DeviceChoiceError, match="no mdev type vfio_harness_mdev-small on parent"):
        choose_device(sysfs, DeviceRequest(), OURS)


def test_a_type_with_no_instance_left_is_an_error(sysfs: MdevSysfs) -> None:
    mtype = sysfs.find_type("mtty-1")
    mtype.create()
    mtype.create()
    with pytest.raises(DeviceChoiceError, match=r"no instance left \(available_instances is 0\)"):
        choose_device(sysfs, DeviceRequest("mtty-1"), OURS)


def test_a_uuid_names_an_existing_device_of_the_named_type(sysfs: MdevSysfs) -> None:
    device = sysfs.find_type("mtty-1").create()
    chosen = choose_device(sysfs, DeviceRequest(uuid=device.uuid), OURS)
    assert chosen.existing == device
    with pytest.raises(DeviceChoiceError, match="is of type mtty-1, not mtty-2"):
        choose_device(sysfs, DeviceRequest("mtty-2", uuid=device.uuid), OURS)
    with pytest.raises(DeviceChoiceError, match="no mdev device 00000000-"):
        choose_device(sysfs, DeviceRequest(uuid="00000000-0000-0000-0000-000000000000"), OURS)


def test_no_parent_at_all_says_to_load_the_driver(tmp_path: Path) -> None:
    empty = FakeMdevTree(tmp_path, []).sysfs()
    assert offered(empty) == "no mdev parent at all: is the vendor driver loaded?"
