# SPDX-License-Identifier: MIT
"""A fake mdev sysfs tree that reacts to writes the way the kernel does, for unit tests.

`FakeMdevTree` lays out the real directory structure under a temporary root and keeps it in step
with its own state; `FakeSysfsIO` is the `SysfsIO` that routes writes to `create`, `remove` and
the mdev driver's `unbind`/`bind` into it. Reading and listing use the files on disk, so code
that walks the tree directly sees the same thing as the model.

Kernel behaviour reproduced (file: function):
- mdev_sysfs.c create_store: 36 or 37 bytes else EINVAL; lib/uuid.c uuid_is_valid on the first
  36 (the 37th byte, e.g. echo's newline, is not checked); device named %pUl (lower case).
- mdev_core.c mdev_device_create: duplicate UUID (any parent, any case) EEXIST; drivers without
  get_available share one per-parent counter (mdev_driver.max_instances): 0 left -> EUSERS.
  Drivers with get_available (mtty, mbochs) count in their own probe and fail it (ENOSPC).
- mdev_sysfs.c remove_store: lib/kstrtox.c kstrtoul(buf, 0); a parse error -> EINVAL, 0 -> no-op.
- fs/sysfs/file.c sysfs_kf_write: an empty write never reaches store(); kernfs_fop_open: a
  write-only attribute cannot be read, a read-only one cannot be written (EACCES).
- mdev_sysfs.c available_instances_show: the driver's count, or the parent-wide counter.
- iommu.c iommu_group_add_device: <dev>/iommu_group and <group>/devices/<dev> links; group ids
  and vfio device indexes are IDAs (lowest free number is reused).
- vfio_main.c / device_cdev.c: <dev>/vfio-dev/vfioN (6.1+); the `dev` attribute and
  /dev/vfio/devices/vfioN only with CONFIG_VFIO_DEVICE_CDEV (6.6+).
- mdev_driver.c mdev_match returns 0: an unbound mdev cannot be bound again from sysfs (ENODEV);
  bus.c unbind_store releases the driver, and the vfio device and IOMMU group with it.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from harness.mdev import kernel_parsing
from harness.mdev.layout import SysfsLayout
from harness.mdev.sysfs import MdevSysfs


class InstanceAccounting(Enum):
    """Who counts the instances a parent can still create."""

    # mdev_core.c: one counter per parent, shared by all its types; create fails with EUSERS.
    CORE = "core"
    # The driver's get_available(): each instance of a type costs `units` of the parent's pool,
    # held while the driver is bound; the driver's probe fails (mtty/mbochs: ENOSPC).
    DRIVER = "driver"


class VfioDeviceNode(Enum):
    """What the vfio core shows for each vfio device, by kernel version and config."""

    NONE = "none"  # before 6.1: no vfio-dev directory
    SYSFS_ONLY = "sysfs-only"  # 6.1-6.5, or CONFIG_VFIO_DEVICE_CDEV=n: vfio-dev/vfioN, no `dev`
    CDEV = "cdev"  # 6.6+ with CONFIG_VFIO_DEVICE_CDEV=y: `dev` and /dev/vfio/devices/vfioN


@dataclass(frozen=True)
class FakeTypeSpec:
    """One mdev type; its directory is "<parent.driver_string>-<sysfs_name>"."""

    sysfs_name: str
    pretty_name: str | None = None  # `name` shows this, else sysfs_name (mdev_sysfs.c name_show)
    description: str | None = None  # None: no `description` file (no show_description)
    units: int = 1  # DRIVER accounting: pool units one instance holds (mtty: ports)
    has_name: bool = True  # False models pre-6.1 drivers that offered no `name`


@dataclass(frozen=True)
class FakeParentSpec:
    """A parent device registered with mdev_register_parent()."""

    name: str = "mtty"
    driver_string: str = "mtty"  # dev_driver_string(parent): the type directories' prefix
    mdev_driver: str = "mtty"  # the mdev driver new devices are bound to
    device_api: str = "vfio-pci"
    types: tuple[FakeTypeSpec, ...] = (FakeTypeSpec("1"), FakeTypeSpec("2"))
    capacity: int = 4  # CORE: instances; DRIVER: units
    accounting: InstanceAccounting = InstanceAccounting.CORE
    exhausted_errno: int = errno.ENOSPC  # what the driver's probe returns (DRIVER only)
    device_path: str | None = None  # below sys/devices; default virtual/<driver_string>/<name>

    @property
    def sys_devices_path(self) -> str:
        return self.device_path or f"virtual/{self.driver_string}/{self.name}"

    def type_id(self, mtype: FakeTypeSpec) -> str:
        return f"{self.driver_string}-{mtype.sysfs_name}"


@dataclass
class _Parent:
    spec: FakeParentSpec
    path: Path
    pool: int
    types: dict[str, FakeTypeSpec] = field(default_factory=dict)

    def available(self, mtype: FakeTypeSpec) -> int:
        if self.spec.accounting is InstanceAccounting.CORE:
            return self.pool
        return self.pool // mtype.units


@dataclass
class _Device:
    uuid: str
    parent: _Parent
    type_id: str
    path: Path
    iommu_group: int | None = None
    vfio_index: int | None = None

    @property
    def bound(self) -> bool:
        return self.iommu_group is not None


def _lowest_free(used: Iterable[int], start: int) -> int:
    taken = set(used)
    number = start
    while number in taken:
        number += 1
    return number


def _oserror(err: int, path: Path) -> OSError:
    return OSError(err, os.strerror(err), str(path))


class FakeMdevTree:
    """The kernel side of mdev, simulated under `root` (usually a pytest tmp_path)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        parents: Sequence[FakeParentSpec] = (FakeParentSpec(),),
        *,
        vfio_device_node: VfioDeviceNode = VfioDeviceNode.CDEV,
        first_iommu_group: int = 0,
        first_vfio_index: int = 0,
        vfio_cdev_major: int = 511,
    ) -> None:
        os.makedirs(root, exist_ok=True)
        # Real paths throughout: writes arrive through symlinks and must match these keys.
        self.layout = SysfsLayout.at(os.path.realpath(root))
        self.vfio_device_node = vfio_device_node
        self.first_iommu_group = first_iommu_group
        self.first_vfio_index = first_vfio_index
        self.vfio_cdev_major = vfio_cdev_major
        # Plays mdev_list_lock: stress tests may create and remove from several threads.
        self._lock = threading.RLock()
        self._parents: dict[str, _Parent] = {}
        self._types_by_dir: dict[Path, tuple[_Parent, FakeTypeSpec]] = {}
        self._devices: dict[str, _Device] = {}
        self._devices_by_dir: dict[Path, _Device] = {}
        self._write_only: set[Path] = set()
        self.io = FakeSysfsIO(self)
        self._build_static_tree(parents)

    @property
    def root(self) -> Path:
        return self.layout.root

    def sysfs(self) -> MdevSysfs:
        """The model, wired to this tree."""
        return MdevSysfs(self.root, self.io)

    # -- static layout ---------------------------------------------------------------------------

    def _build_static_tree(self, parents: Sequence[FakeParentSpec]) -> None:
        for directory in (
            self.layout.mdev_bus_class,
            self.layout.mdev_bus_devices,
            self.layout.mdev_bus_drivers,
            self.layout.iommu_groups,
            self.layout.dev_vfio,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        if self.vfio_device_node is not VfioDeviceNode.NONE:
            self.layout.vfio_dev_class.mkdir(parents=True, exist_ok=True)
        if self.vfio_device_node is VfioDeviceNode.CDEV:
            self.layout.dev_vfio_devices.mkdir(parents=True, exist_ok=True)
        for spec in parents:
            self._register_parent(spec)

    def _register_parent(self, spec: FakeParentSpec) -> None:
        if spec.name in self._parents:
            raise ValueError(f"parent {spec.name!r} given twice")
        if spec.capacity < 0 or any(mtype.units < 1 for mtype in spec.types):
            raise ValueError(f"parent {spec.name!r}: capacity must be >= 0 and units >= 1")
        path = self.layout.sys_devices / spec.sys_devices_path
        parent = _Parent(spec, path, spec.capacity)
        self._parents[spec.name] = parent
        path.mkdir(parents=True, exist_ok=True)
        self._symlink(self.layout.mdev_bus_class / spec.name, path)

        for mtype in spec.types:
            type_id = spec.type_id(mtype)
            if type_id in parent.types:
                raise ValueError(f"parent {spec.name!r}: type {type_id!r} given twice")
            parent.types[type_id] = mtype
            type_dir = path / "mdev_supported_types" / type_id
            (type_dir / "devices").mkdir(parents=True)
            if mtype.has_name:
                (type_dir / "name").write_text(f"{mtype.pretty_name or mtype.sysfs_name}\n")
            if mtype.description is not None:
                text = mtype.description
                (type_dir / "description").write_text(text if text.endswith("\n") else text + "\n")
            (type_dir / "device_api").write_text(f"{spec.device_api}\n")
            self._touch_write_only(type_dir / "create")
            self._types_by_dir[type_dir] = (parent, mtype)

        driver_dir = self.layout.mdev_bus_drivers / spec.mdev_driver
        driver_dir.mkdir(exist_ok=True)
        self._touch_write_only(driver_dir / "bind")
        self._touch_write_only(driver_dir / "unbind")
        self._refresh_available(parent)

    def _touch_write_only(self, path: Path) -> None:
        path.touch()
        self._write_only.add(path)

    @staticmethod
    def _symlink(link: Path, target: Path) -> None:
        # Relative, like sysfs's own links, so they resolve inside whatever root the tree is under.
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(target, link.parent))

    def _refresh_available(self, parent: _Parent) -> None:
        for type_id, mtype in parent.types.items():
            attribute = parent.path / "mdev_supported_types" / type_id / "available_instances"
            # Replace, not rewrite in place: a reader walking the tree directly must never see
            # the empty file between truncate and write.
            staging = attribute.with_name(".available_instances.new")
            staging.write_text(f"{parent.available(mtype)}\n")
            os.replace(staging, attribute)

    # -- what user space sees: attribute reads and writes ----------------------------------------

    def kernel_read(self, path: Path) -> bytes:
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise _oserror(errno.ENOENT, path)
        if real.is_dir():
            raise _oserror(errno.EISDIR, path)
        if real in self._write_only:
            raise _oserror(errno.EACCES, path)
        with self._lock:
            return real.read_bytes()

    def kernel_write(self, path: Path, data: bytes) -> int:
        """One write(); returns the count like store() or raises OSError(errno)."""
        real = Path(os.path.realpath(path))
        if not real.exists():
            raise _oserror(errno.ENOENT, path)
        if real.is_dir():
            raise _oserror(errno.EISDIR, path)
        if real not in self._write_only:
            raise _oserror(errno.EACCES, path)
        buffer = kernel_parsing.store_buffer(data)
        if not buffer:
            return 0  # sysfs_kf_write: an empty write never reaches store()
        with self._lock:
            if real.name == "create":
                parent, mtype = self._types_by_dir[real.parent]
                self._create(parent, mtype, buffer)
            elif real.name == "remove":
                self._remove(self._devices_by_dir[real.parent], buffer)
            elif real.name == "unbind":
                self._unbind_store(real.parent.name, buffer)
            else:  # bind: mdev_match() never matches, so bind_store() finds no device to attach
                raise _oserror(errno.ENODEV, path)
        return len(buffer)

    # -- mdev_core.c ------------------------------------------------------------------------------

    def _create(self, parent: _Parent, mtype: FakeTypeSpec, buffer: bytes) -> None:
        name = kernel_parsing.parse_create(buffer)
        if name in self._devices:
            raise _oserror(errno.EEXIST, parent.path / name)
        if parent.spec.accounting is InstanceAccounting.CORE:
            if parent.pool == 0:
                raise _oserror(errno.EUSERS, parent.path)
            parent.pool -= 1
        elif parent.pool < mtype.units:
            # device_add() then a failing probe; device_del() leaves nothing behind.
            raise _oserror(parent.spec.exhausted_errno, parent.path)

        type_id = parent.spec.type_id(mtype)
        type_dir = parent.path / "mdev_supported_types" / type_id
        device = _Device(name, parent, type_id, parent.path / name)
        device.path.mkdir()
        self._touch_write_only(device.path / "remove")
        self._symlink(device.path / "subsystem", self.layout.root / "sys/bus/mdev")
        self._symlink(self.layout.mdev_bus_devices / name, device.path)
        self._symlink(type_dir / "devices" / name, device.path)
        self._symlink(device.path / "mdev_type", type_dir)
        self._devices[name] = device
        self._devices_by_dir[device.path] = device
        self._attach_driver(device, mtype)
        self._refresh_available(parent)

    def _remove(self, device: _Device, buffer: bytes) -> None:
        try:
            value = kernel_parsing.kstrtoul(buffer)
        except OSError:
            raise _oserror(errno.EINVAL, device.path / "remove") from None
        if value == 0:
            return
        if device.bound:
            self._detach_driver(device)
        for link in (
            self.layout.mdev_bus_devices / device.uuid,
            device.parent.path / "mdev_supported_types" / device.type_id / "devices" / device.uuid,
        ):
            link.unlink()
        for entry in device.path.iterdir():
            entry.unlink()
            self._write_only.discard(entry)
        device.path.rmdir()
        del self._devices[device.uuid]
        del self._devices_by_dir[device.path]
        if device.parent.spec.accounting is InstanceAccounting.CORE:
            device.parent.pool += 1  # mdev_device_release()
        self._refresh_available(device.parent)

    # -- driver binding: IOMMU group and vfio device ----------------------------------------------

    def _attach_driver(self, device: _Device, mtype: FakeTypeSpec) -> None:
        parent = device.parent
        if parent.spec.accounting is InstanceAccounting.DRIVER:
            parent.pool -= mtype.units
        driver_dir = self.layout.mdev_bus_drivers / parent.spec.mdev_driver
        self._symlink(device.path / "driver", driver_dir)
        self._symlink(driver_dir / device.uuid, device.path)

        group = _lowest_free(
            (d.iommu_group for d in self._devices.values() if d.iommu_group is not None),
            self.first_iommu_group,
        )
        group_dir = self.layout.iommu_groups / str(group)
        (group_dir / "devices").mkdir(parents=True)
        self._symlink(group_dir / "devices" / device.uuid, device.path)
        self._symlink(device.path / "iommu_group", group_dir)
        self.layout.group_node(group).touch()
        device.iommu_group = group

        if self.vfio_device_node is VfioDeviceNode.NONE:
            return
        index = _lowest_free(
            (d.vfio_index for d in self._devices.values() if d.vfio_index is not None),
            self.first_vfio_index,
        )
        vfio_name = f"vfio{index}"
        vfio_dir = device.path / "vfio-dev" / vfio_name
        vfio_dir.mkdir(parents=True)
        self._symlink(self.layout.vfio_dev_class / vfio_name, vfio_dir)
        if self.vfio_device_node is VfioDeviceNode.CDEV:
            (vfio_dir / "dev").write_text(f"{self.vfio_cdev_major}:{index}\n")
            self.layout.cdev_node(vfio_name).touch()
        device.vfio_index = index

    def _detach_driver(self, device: _Device) -> None:
        parent = device.parent
        if device.vfio_index is not None:
            vfio_name = f"vfio{device.vfio_index}"
            vfio_dir = device.path / "vfio-dev" / vfio_name
            (vfio_dir / "dev").unlink(missing_ok=True)
            vfio_dir.rmdir()
            vfio_dir.parent.rmdir()
            (self.layout.vfio_dev_class / vfio_name).unlink()
            self.layout.cdev_node(vfio_name).unlink(missing_ok=True)
            device.vfio_index = None
        if device.iommu_group is not None:
            group_dir = self.layout.iommu_groups / str(device.iommu_group)
            (group_dir / "devices" / device.uuid).unlink()
            (group_dir / "devices").rmdir()
            group_dir.rmdir()
            (device.path / "iommu_group").unlink()
            self.layout.group_node(device.iommu_group).unlink()
            device.iommu_group = None
        (device.path / "driver").unlink()
        (self.layout.mdev_bus_drivers / parent.spec.mdev_driver / device.uuid).unlink()
        if parent.spec.accounting is InstanceAccounting.DRIVER:
            # The driver's release gives its units back (mtty_release_dev).
            parent.pool += parent.types[device.type_id].units

    def _unbind_store(self, driver: str, buffer: bytes) -> None:
        device = next(
            (d for d in self._devices.values() if kernel_parsing.sysfs_streq(buffer, d.uuid)), None
        )
        if device is None or not device.bound or device.parent.spec.mdev_driver != driver:
            raise _oserror(errno.ENODEV, self.layout.mdev_bus_drivers / driver / "unbind")
        self._detach_driver(device)
        self._refresh_available(device.parent)

    def unbind_driver(self, uuid: str) -> None:
        """What `echo <uuid> > /sys/bus/mdev/drivers/<drv>/unbind` does."""
        device = self._devices[uuid.lower()]
        driver_dir = self.layout.mdev_bus_drivers / device.parent.spec.mdev_driver
        self.kernel_write(driver_dir / "unbind", uuid.encode())


class FakeSysfsIO:
    """The SysfsIO for a FakeMdevTree; `writes` logs every write as (path, bytes sent)."""

    def __init__(self, tree: FakeMdevTree) -> None:
        self._tree = tree
        self.writes: list[tuple[Path, bytes]] = []

    def read_text(self, path: Path) -> str:
        return self._tree.kernel_read(path).decode("utf-8", errors="surrogateescape")

    def write_text(self, path: Path, text: str) -> None:
        data = text.encode("utf-8", errors="surrogateescape")
        self.writes.append((path, data))
        self._tree.kernel_write(path, data)
