# SPDX-License-Identifier: MIT
"""The fake kernel's own semantics: what a shell writing to its attributes would see.

Other layers' tests trust the fake to answer like the kernel; these pin that down, byte by byte.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from harness.mdev import MdevError
from harness.mdev import kernel_parsing as kp
from harness.mdev.fake import (
    FakeMdevTree,
    FakeParentSpec,
    FakeTypeSpec,
    InstanceAccounting,
    VfioDeviceNode,
)

UUID_A = "3f7a9c1e-5b2d-4e8f-9a6c-0d1e2f3a4b5c"


@pytest.fixture
def tree(tmp_path: Path) -> FakeMdevTree:
    return FakeMdevTree(tmp_path)


def type_dir(tree: FakeMdevTree, type_id: str = "mtty-1") -> Path:
    return tree.root / "sys/devices/virtual/mtty/mtty/mdev_supported_types" / type_id


def device_dir(tree: FakeMdevTree, name: str = UUID_A) -> Path:
    return tree.root / "sys/bus/mdev/devices" / name


def errno_of(tree: FakeMdevTree, path: Path, data: bytes) -> int:
    with pytest.raises(OSError) as info:
        tree.kernel_write(path, data)
    assert info.value.errno is not None
    return info.value.errno


# -- create ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [b"", b"\n", b"x", b"\0"])
def test_create_accepts_36_bytes_and_ignores_a_37th(tree: FakeMdevTree, suffix: bytes) -> None:
    data = UUID_A.encode() + suffix
    assert tree.kernel_write(type_dir(tree) / "create", data) == len(data)
    assert device_dir(tree).is_dir()


def test_empty_write_never_reaches_create(tree: FakeMdevTree) -> None:
    assert tree.kernel_write(type_dir(tree) / "create", b"") == 0
    assert list((tree.root / "sys/bus/mdev/devices").iterdir()) == []


def test_oversized_write_is_cut_to_a_page_and_rejected(tree: FakeMdevTree) -> None:
    assert errno_of(tree, type_dir(tree) / "create", UUID_A.encode() * 200) == errno.EINVAL


def test_create_builds_the_kernels_layout(tree: FakeMdevTree) -> None:
    tree.kernel_write(type_dir(tree) / "create", UUID_A.upper().encode())
    real = tree.root / "sys/devices/virtual/mtty/mtty" / UUID_A
    assert device_dir(tree).resolve() == real
    assert (real / "mdev_type").resolve() == type_dir(tree)
    assert (type_dir(tree) / "devices" / UUID_A).resolve() == real
    assert (real / "driver").resolve() == tree.root / "sys/bus/mdev/drivers/mtty"
    assert (tree.root / "sys/bus/mdev/drivers/mtty" / UUID_A).resolve() == real
    assert (real / "iommu_group").resolve() == tree.root / "sys/kernel/iommu_groups/0"
    assert (tree.root / "sys/kernel/iommu_groups/0/devices" / UUID_A).resolve() == real
    assert (tree.root / "sys/class/vfio-dev/vfio0").resolve() == real / "vfio-dev/vfio0"
    assert (real / "vfio-dev/vfio0/dev").read_text() == "511:0\n"
    assert (tree.root / "dev/vfio/0").is_file()
    assert (tree.root / "dev/vfio/devices/vfio0").is_file()
    assert (real / "remove").is_file()


def test_vfio_indexes_and_groups_are_lowest_free_from_the_configured_start(
    tmp_path: Path,
) -> None:
    tree = FakeMdevTree(tmp_path, first_iommu_group=3, first_vfio_index=10)
    names = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(3)]
    for name in names:
        tree.kernel_write(type_dir(tree) / "create", name.encode())
    tree.kernel_write(device_dir(tree, names[1]) / "remove", b"1")
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    assert (device_dir(tree) / "iommu_group").resolve().name == "4"
    assert sorted(p.name for p in (device_dir(tree) / "vfio-dev").iterdir()) == ["vfio11"]


def test_sysfs_only_vfio_device_has_no_dev_attribute_and_no_node(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, vfio_device_node=VfioDeviceNode.SYSFS_ONLY)
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    assert (device_dir(tree) / "vfio-dev/vfio0").is_dir()
    assert not (device_dir(tree) / "vfio-dev/vfio0/dev").exists()
    assert not (tree.root / "dev/vfio/devices").exists()


# -- remove ----------------------------------------------------------------------------------------

REMOVES = [b"1", b"1\n", b"+1", b"2", b"0x1", b"0X1f", b"01", b"18446744073709551615", b"1\0junk"]
KEEPS = [b"0", b"0\n", b"00", b"+0", b"0x0"]
REJECTS = [
    b"-1",
    b" 1",
    b"1 ",
    b"yes",
    b"1\n\n",
    b"0x",
    b"0xg",
    b"08",
    b"\n",
    b"18446744073709551616",  # ERANGE from kstrtoul, EINVAL from remove_store
]


@pytest.mark.parametrize("data", REMOVES)
def test_remove_with_a_true_integer_removes(tree: FakeMdevTree, data: bytes) -> None:
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    assert tree.kernel_write(device_dir(tree) / "remove", data) == len(data)
    assert not device_dir(tree).exists()
    assert not (tree.root / "sys/devices/virtual/mtty/mtty" / UUID_A).exists()
    assert not (tree.root / "sys/kernel/iommu_groups/0").exists()
    assert not (tree.root / "sys/class/vfio-dev/vfio0").exists()


@pytest.mark.parametrize("data", [*KEEPS, b""])
def test_remove_with_zero_or_nothing_keeps_the_device(tree: FakeMdevTree, data: bytes) -> None:
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    assert tree.kernel_write(device_dir(tree) / "remove", data) == len(data)
    assert device_dir(tree).is_dir()


@pytest.mark.parametrize("data", REJECTS)
def test_remove_with_garbage_is_einval(tree: FakeMdevTree, data: bytes) -> None:
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    assert errno_of(tree, device_dir(tree) / "remove", data) == errno.EINVAL
    assert device_dir(tree).is_dir()


def test_remove_after_remove_is_enoent(tree: FakeMdevTree) -> None:
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    remove = device_dir(tree) / "remove"
    tree.kernel_write(remove, b"1")
    assert errno_of(tree, remove, b"1") == errno.ENOENT


# -- attribute access modes ------------------------------------------------------------------------


def test_write_only_attributes_cannot_be_read(tree: FakeMdevTree) -> None:
    with pytest.raises(OSError) as info:
        tree.io.read_text(type_dir(tree) / "create")
    assert info.value.errno == errno.EACCES


@pytest.mark.parametrize("attribute", ["available_instances", "name", "device_api"])
def test_read_only_attributes_cannot_be_written(tree: FakeMdevTree, attribute: str) -> None:
    before = (type_dir(tree) / attribute).read_text()
    assert errno_of(tree, type_dir(tree) / attribute, b"7") == errno.EACCES
    assert (type_dir(tree) / attribute).read_text() == before


def test_missing_attribute_is_enoent(tree: FakeMdevTree) -> None:
    assert errno_of(tree, type_dir(tree, "mtty-9") / "create", UUID_A.encode()) == errno.ENOENT
    with pytest.raises(OSError) as info:
        tree.io.read_text(type_dir(tree) / "description")
    assert info.value.errno == errno.ENOENT


def test_model_wraps_an_eacces_with_the_operation(tree: FakeMdevTree) -> None:
    sysfs = tree.sysfs()
    with pytest.raises(MdevError) as info:
        sysfs.write_attribute(type_dir(tree) / "name", "x", "rename type")
    assert info.value.errno == errno.EACCES
    assert str(info.value).startswith("rename type: ")


# -- driver bind / unbind --------------------------------------------------------------------------


def test_unbind_via_sysfs_and_no_way_back(tree: FakeMdevTree) -> None:
    drivers = tree.root / "sys/bus/mdev/drivers/mtty"
    tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
    tree.kernel_write(drivers / "unbind", UUID_A.encode() + b"\n")  # sysfs_streq: newline ok
    assert not (device_dir(tree) / "driver").exists()
    assert not (device_dir(tree) / "iommu_group").exists()
    assert not (device_dir(tree) / "vfio-dev").exists()
    assert not (tree.root / "dev/vfio/0").exists()
    assert errno_of(tree, drivers / "unbind", UUID_A.encode()) == errno.ENODEV
    assert errno_of(tree, drivers / "bind", UUID_A.encode()) == errno.ENODEV  # mdev_match() == 0


def test_unbinding_returns_driver_counted_units_but_not_core_counted_instances(
    tmp_path: Path,
) -> None:
    driver_counted = FakeParentSpec(
        name="mtty",
        types=(FakeTypeSpec("2", units=2),),
        capacity=2,
        accounting=InstanceAccounting.DRIVER,
    )
    core_counted = FakeParentSpec(
        name="mdpy",
        driver_string="mdpy",
        mdev_driver="mdpy",
        types=(FakeTypeSpec("x"),),
        capacity=1,
    )
    tree = FakeMdevTree(tmp_path, [driver_counted, core_counted])
    sysfs = tree.sysfs()
    ports, display = sysfs.find_type("mtty-2"), sysfs.find_type("mdpy-x")
    ports_device, display_device = ports.create(), display.create()
    assert (ports.available_instances, display.available_instances) == (0, 0)

    tree.unbind_driver(ports_device.uuid)
    tree.unbind_driver(display_device.uuid)
    assert (ports.available_instances, display.available_instances) == (1, 0)

    ports_device.remove()
    display_device.remove()
    assert (ports.available_instances, display.available_instances) == (1, 1)


# -- concurrency and configuration -----------------------------------------------------------------


def test_concurrent_creates_never_overcommit(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, [FakeParentSpec(capacity=5)])
    results: list[int] = []
    lock = threading.Lock()

    def create(index: int) -> None:
        try:
            tree.io.write_text(
                type_dir(tree) / "create", f"{index:08x}-0000-4000-8000-000000000000"
            )
            outcome = 0
        except OSError as exc:
            outcome = exc.errno or -1
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0] * 5 + [errno.EUSERS] * 11
    assert len(list((tree.root / "sys/bus/mdev/devices").iterdir())) == 5


def test_available_instances_is_never_torn_while_devices_come_and_go(tmp_path: Path) -> None:
    tree = FakeMdevTree(tmp_path, [FakeParentSpec(capacity=3)])
    attribute = type_dir(tree) / "available_instances"
    seen: set[str] = set()
    done = threading.Event()

    def read_directly() -> None:
        while not done.is_set():
            seen.add(attribute.read_text())

    reader = threading.Thread(target=read_directly)
    reader.start()
    try:
        for _ in range(100):
            tree.kernel_write(type_dir(tree) / "create", UUID_A.encode())
            tree.kernel_write(device_dir(tree) / "remove", b"1")
    finally:
        done.set()
        reader.join()
    assert seen <= {"3\n", "2\n"}
    assert "3\n" in seen


def test_specs_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="given twice"):
        FakeMdevTree(tmp_path / "a", [FakeParentSpec(), FakeParentSpec()])
    with pytest.raises(ValueError, match="given twice"):
        FakeMdevTree(tmp_path / "b", [FakeParentSpec(types=(FakeTypeSpec("1"), FakeTypeSpec("1")))])
    with pytest.raises(ValueError, match="units"):
        FakeMdevTree(tmp_path / "c", [FakeParentSpec(types=(FakeTypeSpec("1", units=0),))])


# -- the parsing rules on their own ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (UUID_A, True),
        (UUID_A.upper(), True),
        (UUID_A + "trailing", True),  # only the first 36 are looked at
        (UUID_A[:35], False),
        (UUID_A.replace("-", "_"), False),
        ("0" * 36, False),
        ("é" + UUID_A[2:], False),
    ],
)
def test_uuid_is_valid(text: str, valid: bool) -> None:
    assert kp.uuid_is_valid(text.encode()) is valid


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"1", 1),
        (b"0x10", 16),
        (b"010", 8),
        (b"+7\n", 7),
        (b"0", 0),
        (b"0xFFFFFFFFFFFFFFFF", 2**64 - 1),
    ],
)
def test_kstrtoul_values(data: bytes, value: int) -> None:
    assert kp.kstrtoul(data) == value


def test_kstrtoul_overflow_is_erange() -> None:
    with pytest.raises(OSError) as info:
        kp.kstrtoul(b"0x10000000000000000")
    assert info.value.errno == errno.ERANGE
