# SPDX-License-Identifier: MIT
"""The sysfs model of mediated devices: parents, their types, and the devices created from them.

Layout (all below a configurable root, see layout.py):

    sys/class/mdev_bus/<parent>                      -> the parent device's directory
    <parent>/mdev_supported_types/<type_id>/         name, description, device_api,
                                                     available_instances, create, devices/
    sys/bus/mdev/devices/<uuid>                      -> <parent>/<uuid>
    <parent>/<uuid>/                                 remove, mdev_type ->, iommu_group ->,
                                                     driver ->, vfio-dev/vfioN/

Objects are handles, not snapshots: every attribute read goes to sysfs (available_instances
changes with every create/remove). All attribute I/O goes through the `SysfsIO` the model was
given; directory listings and symlinks are read with os directly (the fake tree is real on disk).
"""

from __future__ import annotations

import errno
import os
import uuid as uuid_mod
from dataclasses import dataclass, field
from pathlib import Path

from harness.mdev.errors import MdevAmbiguousTypeError, MdevError, MdevNotFoundError
from harness.mdev.layout import SysfsLayout
from harness.mdev.sysfs_io import RealSysfsIO, SysfsIO


def _sorted_entries(directory: Path) -> list[str]:
    """Names in `directory`, sorted; an absent directory (module not loaded) has none."""
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _link_basename(link: Path) -> str | None:
    """The last component of a symlink's target, or None when there is no such link."""
    try:
        return os.path.basename(os.readlink(link))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # a file, not a link
            return None
        raise


def device_name(uuid: str | uuid_mod.UUID) -> str:
    """The kernel's name for an mdev: its UUID printed with %pUl, i.e. lower case."""
    return str(uuid).strip().lower()


class MdevSysfs:
    """Entry point: the mdev parents, types and devices visible under `root`."""

    def __init__(self, root: str | os.PathLike[str] = "/", io: SysfsIO | None = None) -> None:
        self.layout = SysfsLayout.at(root)
        self.io: SysfsIO = io if io is not None else RealSysfsIO()

    @property
    def root(self) -> Path:
        return self.layout.root

    def __repr__(self) -> str:
        return f"MdevSysfs(root={str(self.root)!r}, io={type(self.io).__name__})"

    # -- attribute I/O: the one place where OSError becomes MdevError ---------------------------

    def read_attribute(self, path: Path, operation: str) -> str:
        try:
            return self.io.read_text(path)
        except OSError as exc:
            raise MdevError(operation, path, exc.errno or errno.EIO) from exc

    def write_attribute(self, path: Path, text: str, operation: str) -> None:
        try:
            self.io.write_text(path, text)
        except OSError as exc:
            raise MdevError(operation, path, exc.errno or errno.EIO) from exc

    # -- parents --------------------------------------------------------------------------------

    def parent_names(self) -> list[str]:
        return _sorted_entries(self.layout.mdev_bus_class)

    def parents(self) -> list[MdevParent]:
        return [self.parent(name) for name in self.parent_names()]

    def parent(self, name: str) -> MdevParent:
        link = self.layout.mdev_bus_class / name
        if not link.exists():
            raise MdevNotFoundError("mdev parent", name, link, self.parent_names())
        return MdevParent(self, name, Path(os.path.realpath(link)))

    # -- types ----------------------------------------------------------------------------------

    def types(self) -> list[MdevType]:
        return [mtype for parent in self.parents() for mtype in parent.types()]

    def find_type(self, type_id: str, parent: str | None = None) -> MdevType:
        """The type `type_id`; `parent` is needed only when several parents offer it."""
        if parent is not None:
            return self.parent(parent).type(type_id)
        matches = [mtype for mtype in self.types() if mtype.type_id == type_id]
        if not matches:
            known = {f"{mtype.parent_name}/{mtype.type_id}" for mtype in self.types()}
            raise MdevNotFoundError("mdev type", type_id, self.layout.mdev_bus_class, known)
        if len(matches) > 1:
            raise MdevAmbiguousTypeError(
                type_id, self.layout.mdev_bus_class, [m.parent_name for m in matches]
            )
        return matches[0]

    # -- devices --------------------------------------------------------------------------------

    def device_uuids(self) -> list[str]:
        return _sorted_entries(self.layout.mdev_bus_devices)

    def devices(self) -> list[MdevDevice]:
        return [MdevDevice(self, name) for name in self.device_uuids()]

    def device(self, uuid: str | uuid_mod.UUID) -> MdevDevice:
        name = device_name(uuid)
        link = self.layout.mdev_bus_devices / name
        # A name that is not one path component ("", "..") would point at a directory, not a device.
        if not name or name in (".", "..") or "/" in name or not link.exists():
            raise MdevNotFoundError("mdev device", name, link, self.device_uuids())
        return MdevDevice(self, name)

    def create(
        self,
        type_id: str,
        uuid: str | uuid_mod.UUID | None = None,
        *,
        parent: str | None = None,
    ) -> MdevDevice:
        """Create an mdev of `type_id` (see MdevType.create)."""
        return self.find_type(type_id, parent).create(uuid)


@dataclass(frozen=True)
class MdevParent:
    """A device registered with mdev_register_parent(); `path` is its real sysfs directory."""

    sysfs: MdevSysfs = field(repr=False, compare=False)
    name: str
    path: Path

    @property
    def types_dir(self) -> Path:
        return self.path / "mdev_supported_types"

    def type_ids(self) -> list[str]:
        return [
            name for name in _sorted_entries(self.types_dir) if (self.types_dir / name).is_dir()
        ]

    def types(self) -> list[MdevType]:
        return [
            MdevType(self.sysfs, self.name, type_id, self.types_dir / type_id)
            for type_id in self.type_ids()
        ]

    def type(self, type_id: str) -> MdevType:
        path = self.types_dir / type_id
        if not path.is_dir():
            raise MdevNotFoundError(
                f"mdev type of parent {self.name!r}", type_id, path, self.type_ids()
            )
        return MdevType(self.sysfs, self.name, type_id, path)

    def devices(self) -> list[MdevDevice]:
        return [device for mtype in self.types() for device in mtype.devices()]


@dataclass(frozen=True)
class MdevType:
    """One entry of <parent>/mdev_supported_types; named "<driver>-<sysfs_name>" by the kernel."""

    sysfs: MdevSysfs = field(repr=False, compare=False)
    parent_name: str
    type_id: str
    path: Path

    @property
    def parent(self) -> MdevParent:
        return MdevParent(self.sysfs, self.parent_name, self.path.parent.parent)

    def _read(self, attribute: str) -> str:
        return self.sysfs.read_attribute(
            self.path / attribute, f"read {attribute} of mdev type {self.type_id}"
        )

    def _read_optional(self, attribute: str) -> str | None:
        try:
            return self._read(attribute)
        except MdevError as exc:
            if exc.errno == errno.ENOENT and self.path.is_dir():
                return None
            raise

    @property
    def name(self) -> str | None:
        """Human-readable name; None where the kernel does not offer it (before 6.1, drivers
        could omit it; since 6.1 the core always shows the pretty name or the sysfs name)."""
        text = self._read_optional("name")
        return None if text is None else text.rstrip("\n")

    @property
    def description(self) -> str | None:
        """Free text, possibly several lines; None when the driver has no show_description."""
        text = self._read_optional("description")
        return None if text is None else text.rstrip("\n")

    @property
    def device_api(self) -> str:
        """The VFIO device API the mdevs of this type speak, e.g. "vfio-pci"."""
        return self._read("device_api").strip()

    @property
    def available_instances(self) -> int:
        """How many more mdevs can be created now; read afresh on every access."""
        text = self._read("available_instances")
        try:
            value = int(text.strip(), 10)
        except ValueError:
            value = -1
        if value < 0:
            raise MdevError(
                f"read available_instances of mdev type {self.type_id}",
                self.path / "available_instances",
                errno.EBADMSG,
                f"not an unsigned integer: {text!r}",
            )
        return value

    def device_uuids(self) -> list[str]:
        return _sorted_entries(self.path / "devices")

    def devices(self) -> list[MdevDevice]:
        return [MdevDevice(self.sysfs, name) for name in self.device_uuids()]

    def create(self, uuid: str | uuid_mod.UUID | None = None) -> MdevDevice:
        """Write a UUID to `create`; a fresh uuid4 when none is given.

        A string is written verbatim so that conformance tests can send malformed UUIDs and see
        the kernel's errno (EINVAL). The new device is looked up by the kernel's name for it.
        """
        text = str(uuid if uuid is not None else uuid_mod.uuid4())
        self.sysfs.write_attribute(
            self.path / "create",
            text,
            f"create mdev {text!r} of type {self.type_id} on parent {self.parent_name}",
        )
        return self.sysfs.device(text[:36])


@dataclass(frozen=True)
class MdevDevice:
    """A created mdev, known by its lower-case UUID (sys/bus/mdev/devices/<uuid>)."""

    sysfs: MdevSysfs = field(repr=False, compare=False)
    uuid: str

    @property
    def path(self) -> Path:
        """The bus entry; a symlink to real_path."""
        return self.sysfs.layout.mdev_bus_devices / self.uuid

    @property
    def real_path(self) -> Path:
        return Path(os.path.realpath(self.path))

    @property
    def exists(self) -> bool:
        return self.path.exists()

    def _require(self) -> None:
        if not self.exists:
            raise MdevNotFoundError("mdev device", self.uuid, self.path, self.sysfs.device_uuids())

    @property
    def mdev_type(self) -> MdevType:
        self._require()
        link = self.path / "mdev_type"
        if not link.exists():
            raise MdevError(f"find type of mdev {self.uuid}", link, errno.ENOENT)
        type_dir = Path(os.path.realpath(link))
        return MdevType(self.sysfs, type_dir.parent.parent.name, type_dir.name, type_dir)

    @property
    def parent(self) -> MdevParent:
        self._require()
        parent_dir = self.real_path.parent
        return MdevParent(self.sysfs, parent_dir.name, parent_dir)

    @property
    def iommu_group(self) -> int | None:
        """The IOMMU group number, or None while no vfio driver holds the device.

        Since 6.1 the group of an mdev is made by vfio_register_emulated_iommu_dev() at probe,
        so an mdev whose driver was unbound has none.
        """
        self._require()
        name = _link_basename(self.path / "iommu_group")
        if name is None:
            return None
        if not name.isdigit():
            raise MdevError(
                f"read IOMMU group of mdev {self.uuid}",
                self.path / "iommu_group",
                errno.EBADMSG,
                f"group link names {name!r}, not a number",
            )
        return int(name)

    @property
    def group_node(self) -> Path | None:
        """/dev/vfio/<N> (under the root) for the device's IOMMU group."""
        group = self.iommu_group
        return None if group is None else self.sysfs.layout.group_node(group)

    @property
    def vfio_device_name(self) -> str | None:
        """The name ("vfioN") of the device's vfio_device, in sysfs since 6.1, cdev or not."""
        self._require()
        names = _sorted_entries(self.path / "vfio-dev")
        return names[0] if names else None

    @property
    def vfio_cdev(self) -> Path | None:
        """/dev/vfio/devices/vfioN, or None on kernels without CONFIG_VFIO_DEVICE_CDEV.

        The vfio-dev/vfioN directory exists since 6.1 either way; only a device with a devt
        (the cdev, 6.6+) has the `dev` attribute, so that is what decides.
        """
        name = self.vfio_device_name
        if name is None or not (self.path / "vfio-dev" / name / "dev").exists():
            return None
        return self.sysfs.layout.cdev_node(name)

    @property
    def driver(self) -> str | None:
        """The bound mdev driver's name (e.g. "mtty"), or None when unbound."""
        self._require()
        return _link_basename(self.path / "driver")

    @property
    def is_bound(self) -> bool:
        return self.driver is not None

    def remove(self, *, missing_ok: bool = False) -> None:
        """Write "1" to `remove`; the kernel unbinds the driver and deletes the device."""
        if missing_ok and not self.exists:
            return
        self._require()
        self.sysfs.write_attribute(self.path / "remove", "1", f"remove mdev {self.uuid}")
