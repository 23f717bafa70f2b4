# SPDX-License-Identifier: MIT
"""The mdev sysfs model, driven against the fake kernel tree."""

from __future__ import annotations

import errno
import os
import pickle
import uuid
from pathlib import Path

import pytest

from harness.mdev import (
    MdevAmbiguousTypeError,
    MdevError,
    MdevNotFoundError,
    MdevSysfs,
)
from harness.mdev.fake import (
    FakeMdevTree,
    FakeParentSpec,
    FakeTypeSpec,
    InstanceAccounting,
    VfioDeviceNode,
)

UUID_A = "3f7a9c1e-5b2d-4e8f-9a6c-0d1e2f3a4b5c"
UUID_B = "8c2b4d6e-1f3a-4b5c-8d7e-9f0a1b2c3d4e"

MTTY = FakeParentSpec(
    types=(
        FakeTypeSpec("1", pretty_name="Single port serial"),
        FakeTypeSpec("2", description="ports: 2\nfifo: 16"),
    ),
    capacity=3,
)
GPU = FakeParentSpec(
    name="0000:00:02.0",
    driver_string="i915",
    mdev_driver="intel_vgpu_mdev",
    device_path="pci0000:00/0000:00:02.0",
    types=(FakeTypeSpec("GVTg_V5_4"), FakeTypeSpec("GVTg_V5_8", has_name=False)),
    capacity=2,
)


@pytest.fixture
def tree(tmp_path: Path) -> FakeMdevTree:
    return FakeMdevTree(tmp_path, [MTTY, GPU])


@pytest.fixture
def sysfs(tree: FakeMdevTree) -> MdevSysfs:
    return tree.sysfs()


def writes_to(tree: FakeMdevTree, attribute: str) -> list[bytes]:
    return [data for path, data in tree.io.writes if path.name == attribute]


# -- parents and types ----------------------------------------------------------------------------


def test_parents_are_listed_by_name_with_their_real_directories(
    sysfs: MdevSysfs, tree: FakeMdevTree
) -> None:
    parents = sysfs.parents()
    assert [p.name for p in parents] == ["0000:00:02.0", "mtty"]
    assert parents[0].path == tree.root / "sys/devices/pci0000:00/0000:00:02.0"
    assert parents[1].path == tree.root / "sys/devices/virtual/mtty/mtty"


def test_unknown_parent_names_the_known_ones(sysfs: MdevSysfs) -> None:
    with pytest.raises(MdevNotFoundError) as info:
        sysfs.parent("nvidia0")
    assert info.value.errno == errno.ENOENT
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.known == ("0000:00:02.0", "mtty")
    assert "'nvidia0'" in str(info.value) and "mtty" in str(info.value)


def test_no_mdev_module_means_no_parents_and_no_devices(tmp_path: Path) -> None:
    sysfs = MdevSysfs(tmp_path)
    assert sysfs.parents() == []
    assert sysfs.devices() == []


def test_types_are_named_driver_dash_sysfs_name(sysfs: MdevSysfs) -> None:
    assert sysfs.parent("mtty").type_ids() == ["mtty-1", "mtty-2"]
    assert [t.type_id for t in sysfs.parent("0000:00:02.0").types()] == [
        "i915-GVTg_V5_4",
        "i915-GVTg_V5_8",
    ]


def test_type_attributes(sysfs: MdevSysfs) -> None:
    single, dual = sysfs.parent("mtty").types()
    assert single.name == "Single port serial"
    assert dual.name == "2"  # name_show falls back to the sysfs name
    assert single.description is None  # no show_description: no file at all
    assert dual.description == "ports: 2\nfifo: 16"
    assert single.device_api == "vfio-pci"
    assert single.available_instances == 3
    assert single.parent.name == "mtty"


def test_missing_name_attribute_reads_as_none(sysfs: MdevSysfs) -> None:
    assert sysfs.find_type("i915-GVTg_V5_8").name is None


def test_attribute_of_a_vanished_type_is_an_error_not_none(
    sysfs: MdevSysfs, tree: FakeMdevTree
) -> None:
    mtype = sysfs.find_type("mtty-2")
    for entry in mtype.path.iterdir():
        if entry.is_dir():
            entry.rmdir()
        else:
            entry.unlink()
    mtype.path.rmdir()
    with pytest.raises(MdevError) as info:
        _ = mtype.description
    assert info.value.errno == errno.ENOENT


def test_unknown_type_names_the_known_ones(sysfs: MdevSysfs) -> None:
    with pytest.raises(MdevNotFoundError) as info:
        sysfs.parent("mtty").type("mtty-3")
    assert info.value.known == ("mtty-1", "mtty-2")
    with pytest.raises(MdevNotFoundError) as info:
        sysfs.find_type("mtty-3")
    assert "mtty/mtty-1" in info.value.known and "0000:00:02.0/i915-GVTg_V5_4" in info.value.known


def test_type_offered_by_two_parents_needs_the_parent_named(tmp_path: Path) -> None:
    second_gpu = FakeParentSpec(
        name="0000:00:03.0",
        driver_string="i915",
        device_path="pci0000:00/0000:00:03.0",
        types=(FakeTypeSpec("GVTg_V5_4"),),
    )
    sysfs = FakeMdevTree(tmp_path, [GPU, second_gpu]).sysfs()
    with pytest.raises(MdevAmbiguousTypeError) as info:
        sysfs.find_type("i915-GVTg_V5_4")
    assert info.value.errno == errno.ENOTUNIQ
    assert info.value.parents == ("0000:00:02.0", "0000:00:03.0")
    assert sysfs.find_type("i915-GVTg_V5_4", parent="0000:00:03.0").parent_name == "0000:00:03.0"


# -- create / find / remove -----------------------------------------------------------------------


def test_create_find_remove_round_trip(sysfs: MdevSysfs, tree: FakeMdevTree) -> None:
    mtype = sysfs.find_type("mtty-2")
    device = mtype.create(UUID_A)

    assert device.uuid == UUID_A
    assert device.exists
    assert device.real_path == tree.root / "sys/devices/virtual/mtty/mtty" / UUID_A
    assert sysfs.device(UUID_A) == device
    assert [d.uuid for d in sysfs.devices()] == [UUID_A]
    assert [d.uuid for d in mtype.devices()] == [UUID_A]
    assert [d.uuid for d in sysfs.parent("mtty").devices()] == [UUID_A]
    assert sysfs.find_type("mtty-1").devices() == []
    assert device.mdev_type == mtype
    assert device.parent == sysfs.parent("mtty")

    device.remove()
    assert not device.exists
    assert sysfs.devices() == []
    assert mtype.devices() == []
    with pytest.raises(MdevNotFoundError):
        sysfs.device(UUID_A)
    assert not (tree.root / "sys/devices/virtual/mtty/mtty" / UUID_A).exists()


def test_lookup_accepts_upper_case_and_uuid_objects(sysfs: MdevSysfs) -> None:
    sysfs.find_type("mtty-1").create(UUID_A)
    assert sysfs.device(UUID_A.upper()).uuid == UUID_A
    assert sysfs.device(uuid.UUID(UUID_A)).uuid == UUID_A


@pytest.mark.parametrize("name", ["", ".", "..", "../devices"])
def test_lookup_of_a_name_that_is_no_device_is_not_found(sysfs: MdevSysfs, name: str) -> None:
    with pytest.raises(MdevNotFoundError):
        sysfs.device(name)


def test_create_without_uuid_generates_a_uuid4(sysfs: MdevSysfs, tree: FakeMdevTree) -> None:
    device = sysfs.find_type("mtty-1").create()
    assert uuid.UUID(device.uuid).version == 4
    assert writes_to(tree, "create") == [device.uuid.encode()]


def test_two_generated_uuids_differ(sysfs: MdevSysfs) -> None:
    mtype = sysfs.find_type("mtty-1")
    assert mtype.create().uuid != mtype.create().uuid


def test_create_sends_exactly_the_canonical_uuid(sysfs: MdevSysfs, tree: FakeMdevTree) -> None:
    sysfs.find_type("mtty-1").create(uuid.UUID(UUID_A))
    assert writes_to(tree, "create") == [UUID_A.encode()]  # 36 bytes, no newline


def test_upper_case_uuid_creates_a_lower_case_device(sysfs: MdevSysfs) -> None:
    device = sysfs.find_type("mtty-1").create(UUID_A.upper())
    assert device.uuid == UUID_A
    assert sysfs.device_uuids() == [UUID_A]


def test_echo_style_trailing_newline_is_accepted(sysfs: MdevSysfs) -> None:
    assert sysfs.find_type("mtty-1").create(UUID_A + "\n").uuid == UUID_A


def test_sysfs_create_finds_the_type(sysfs: MdevSysfs) -> None:
    device = sysfs.create("i915-GVTg_V5_4", UUID_B, parent="0000:00:02.0")
    assert device.mdev_type.type_id == "i915-GVTg_V5_4"
    assert device.parent.name == "0000:00:02.0"


MALFORMED_UUIDS = {
    "35 chars": UUID_A[:-1],
    "38 chars": UUID_A + "0\n",
    "two newlines": UUID_A + "\n\n",
    "no hyphens": UUID_A.replace("-", "") + "0000",
    "hyphen moved": UUID_A[:7] + "-" + UUID_A[7] + UUID_A[9:],
    "non-hex digit": "g" + UUID_A[1:],
    "braces": "{" + UUID_A[:35],
    "leading space": " " + UUID_A,
    "NUL inside": UUID_A[:10] + "\0" + UUID_A[11:],
    "urn prefix": "urn:uuid:" + UUID_A,
}


@pytest.mark.parametrize("text", MALFORMED_UUIDS.values(), ids=MALFORMED_UUIDS.keys())
def test_malformed_uuid_is_einval(sysfs: MdevSysfs, text: str) -> None:
    mtype = sysfs.find_type("mtty-1")
    with pytest.raises(MdevError) as info:
        mtype.create(text)
    assert info.value.errno == errno.EINVAL
    message = str(info.value)
    assert "EINVAL" in message and "create mdev" in message
    assert str(mtype.path / "create") in message
    assert sysfs.devices() == []
    assert mtype.available_instances == 3


@pytest.mark.parametrize(
    ("first_type", "second_type", "second_uuid"),
    [
        ("mtty-1", "mtty-1", UUID_A),
        ("mtty-1", "mtty-2", UUID_A),
        ("mtty-1", "i915-GVTg_V5_4", UUID_A),  # the check spans all parents (mdev_list)
        ("mtty-1", "mtty-2", UUID_A.upper()),  # guid_equal compares values, not text
    ],
)
def test_duplicate_uuid_is_eexist(
    sysfs: MdevSysfs, first_type: str, second_type: str, second_uuid: str
) -> None:
    sysfs.find_type(first_type).create(UUID_A)
    second = sysfs.find_type(second_type)
    before = second.available_instances
    with pytest.raises(MdevError) as info:
        second.create(second_uuid)
    assert info.value.errno == errno.EEXIST
    assert "EEXIST" in str(info.value)
    assert second.available_instances == before
    assert sysfs.device_uuids() == [UUID_A]


def test_parent_wide_counter_runs_out_with_eusers(sysfs: MdevSysfs) -> None:
    single, dual = sysfs.find_type("mtty-1"), sysfs.find_type("mtty-2")
    first = single.create()
    assert (single.available_instances, dual.available_instances) == (2, 2)  # one shared counter
    dual.create()
    single.create()
    assert (single.available_instances, dual.available_instances) == (0, 0)
    for mtype in (single, dual):
        with pytest.raises(MdevError) as info:
            mtype.create()
        assert info.value.errno == errno.EUSERS
    assert len(sysfs.devices()) == 3

    first.remove()
    assert (single.available_instances, dual.available_instances) == (1, 1)
    dual.create()
    assert dual.available_instances == 0


def test_duplicate_is_reported_before_exhaustion(sysfs: MdevSysfs) -> None:
    gpu_type = sysfs.find_type("i915-GVTg_V5_4")
    gpu_type.create(UUID_A)
    gpu_type.create(UUID_B)
    assert gpu_type.available_instances == 0
    with pytest.raises(MdevError) as info:
        gpu_type.create(UUID_A)
    assert info.value.errno == errno.EEXIST


def test_driver_counted_instances_cost_units_and_fail_with_the_drivers_errno(
    tmp_path: Path,
) -> None:
    mtty_like = FakeParentSpec(
        types=(FakeTypeSpec("1", units=1), FakeTypeSpec("2", units=2)),
        capacity=3,
        accounting=InstanceAccounting.DRIVER,
    )
    sysfs = FakeMdevTree(tmp_path, [mtty_like]).sysfs()
    single, dual = sysfs.find_type("mtty-1"), sysfs.find_type("mtty-2")
    assert (single.available_instances, dual.available_instances) == (3, 1)
    dual.create()
    assert (single.available_instances, dual.available_instances) == (1, 0)
    with pytest.raises(MdevError) as info:
        dual.create()
    assert info.value.errno == errno.ENOSPC
    single.create()
    with pytest.raises(MdevError) as info:
        single.create()
    assert info.value.errno == errno.ENOSPC
    assert len(sysfs.devices()) == 2


def test_available_instances_is_read_on_every_access(sysfs: MdevSysfs) -> None:
    handle = sysfs.find_type("mtty-1")
    seen = [handle.available_instances]
    sysfs.find_type("mtty-2").create()
    seen.append(handle.available_instances)
    sysfs.devices()[0].remove()
    seen.append(handle.available_instances)
    assert seen == [3, 2, 3]


# -- IOMMU group, vfio device, driver --------------------------------------------------------------


def test_iommu_group_and_group_node(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, [MTTY], first_iommu_group=7)
    sysfs = tree.sysfs()
    first, second = sysfs.find_type("mtty-1").create(), sysfs.find_type("mtty-1").create()
    assert (first.iommu_group, second.iommu_group) == (7, 8)
    assert first.group_node == tree.root / "dev/vfio/7"
    assert first.group_node is not None and first.group_node.exists()
    back_link = tree.root / "sys/kernel/iommu_groups/7/devices" / first.uuid
    assert Path(os.path.realpath(back_link)) == first.real_path

    first.remove()
    assert not (tree.root / "sys/kernel/iommu_groups/7").exists()
    assert not (tree.root / "dev/vfio/7").exists()
    assert sysfs.find_type("mtty-1").create().iommu_group == 7  # the IDA hands out the lowest


def test_vfio_cdev_with_config_vfio_device_cdev(tree: FakeMdevTree, sysfs: MdevSysfs) -> None:
    first, second = sysfs.find_type("mtty-1").create(), sysfs.find_type("mtty-1").create()
    assert first.vfio_device_name == "vfio0"
    assert first.vfio_cdev == tree.root / "dev/vfio/devices/vfio0"
    assert second.vfio_cdev == tree.root / "dev/vfio/devices/vfio1"


def test_no_vfio_cdev_on_6_1_though_the_vfio_device_exists(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, [MTTY], vfio_device_node=VfioDeviceNode.SYSFS_ONLY)
    device = tree.sysfs().find_type("mtty-1").create()
    assert device.vfio_device_name == "vfio0"
    assert device.vfio_cdev is None
    assert device.iommu_group == 0


def test_no_vfio_cdev_before_the_vfio_device_existed(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, [MTTY], vfio_device_node=VfioDeviceNode.NONE)
    device = tree.sysfs().find_type("mtty-1").create()
    assert device.vfio_device_name is None
    assert device.vfio_cdev is None


def test_bound_driver_and_what_unbinding_takes_away(tree: FakeMdevTree, sysfs: MdevSysfs) -> None:
    device = sysfs.find_type("i915-GVTg_V5_4").create(UUID_A)
    assert device.driver == "intel_vgpu_mdev"
    assert device.is_bound

    tree.unbind_driver(UUID_A)
    assert device.driver is None
    assert not device.is_bound
    assert device.iommu_group is None
    assert device.group_node is None
    assert device.vfio_cdev is None
    assert device.mdev_type.type_id == "i915-GVTg_V5_4"  # still an mdev of its type

    device.remove()
    assert sysfs.devices() == []


# -- remove ---------------------------------------------------------------------------------------


def test_remove_writes_exactly_1(sysfs: MdevSysfs, tree: FakeMdevTree) -> None:
    sysfs.find_type("mtty-1").create(UUID_A).remove()
    assert writes_to(tree, "remove") == [b"1"]


def test_removing_a_removed_device_is_not_found_unless_missing_ok(sysfs: MdevSysfs) -> None:
    device = sysfs.find_type("mtty-1").create(UUID_A)
    sysfs.find_type("mtty-1").create(UUID_B)
    device.remove()
    with pytest.raises(MdevNotFoundError) as info:
        device.remove()
    assert info.value.known == (UUID_B,)
    device.remove(missing_ok=True)
    assert sysfs.device_uuids() == [UUID_B]


def test_device_lookups_on_a_removed_device_are_not_found(sysfs: MdevSysfs) -> None:
    device = sysfs.find_type("mtty-1").create(UUID_A)
    device.remove()
    with pytest.raises(MdevNotFoundError):
        _ = device.iommu_group
    with pytest.raises(MdevNotFoundError):
        _ = device.mdev_type


# -- errors ---------------------------------------------------------------------------------------


def test_errors_survive_pickling(sysfs: MdevSysfs) -> None:
    sysfs.find_type("mtty-1").create(UUID_A)
    with pytest.raises(MdevError) as created:
        sysfs.find_type("mtty-1").create(UUID_A)
    with pytest.raises(MdevNotFoundError) as missing:
        sysfs.device(UUID_B)
    for error in (created.value, missing.value):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert copy.errno == error.errno
        assert str(copy) == str(error)
        assert copy.filename == error.filename


def test_error_message_names_operation_path_and_errno() -> None:
    error = MdevError("remove mdev x", Path("/sys/x/remove"), errno.EBUSY, "in use")
    assert str(error) == "remove mdev x: /sys/x/remove: EBUSY (Device or resource busy); in use"
    assert error.errno == errno.EBUSY
    assert error.filename == "/sys/x/remove"
    assert error.operation == "remove mdev x"
