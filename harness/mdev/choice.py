# SPDX-License-Identifier: MIT
"""Which device a run tests, from --mdev-type/--mdev-parent/--mdev-uuid, failing closed.

    chosen = choose_device(MdevSysfs(), DeviceRequest.from_env())
    chosen.mdev_type, chosen.existing       # the type; the device given by UUID, or None

A type named on the command line that is not there, a parent that does not offer it, a UUID
that names no device, or a type with no instance left is a DeviceChoiceError whose message
lists what the host does offer, so a typo or a forgotten --mdev-parent never turns into a run
that skips everything. The parent is inferred when exactly one parent offers the type. With
nothing named, the default is our reference driver's small type (the caller's `default`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from harness.mdev.errors import MdevAmbiguousTypeError, MdevError, MdevNotFoundError
from harness.mdev.sysfs import MdevDevice, MdevSysfs, MdevType

TYPE_ENV = "HARNESS_MDEV_TYPE"
PARENT_ENV = "HARNESS_MDEV_PARENT"
UUID_ENV = "HARNESS_MDEV_UUID"


class DeviceChoiceError(LookupError):
    """The device asked for is not there (or cannot be created); the message says what is."""


@dataclass(frozen=True)
class DeviceRequest:
    type_id: str | None = None
    parent: str | None = None
    uuid: str | None = None

    @classmethod
    def from_env(cls) -> DeviceRequest:
        """The suite's contract (harness/plugin/__init__.py): HARNESS_MDEV_*."""
        return cls(
            os.environ.get(TYPE_ENV) or None,
            os.environ.get(PARENT_ENV) or None,
            os.environ.get(UUID_ENV) or None,
        )

    @property
    def named(self) -> bool:
        return any((self.type_id, self.parent, self.uuid))


@dataclass(frozen=True)
class Chosen:
    mdev_type: MdevType
    existing: MdevDevice | None  # the device named by UUID: used as it is, never removed


def offered(sysfs: MdevSysfs) -> str:
    """What the host offers, for error messages: "mtty: mtty-1 (2 available), mtty-2 (1 ...)"."""
    lines = []
    for parent in sysfs.parents():
        types = []
        for mtype in parent.types():
            try:
                types.append(f"{mtype.type_id} ({mtype.available_instances} available)")
            except MdevError:
                types.append(f"{mtype.type_id} (available_instances unreadable)")
        lines.append(f"parent {parent.name}: {', '.join(types) or 'no types'}")
    if not lines:
        return "no mdev parent at all: is the vendor driver loaded?"
    return "; ".join(lines)


def choose_device(
    sysfs: MdevSysfs, request: DeviceRequest, default: DeviceRequest | None = None
) -> Chosen:
    """The device `request` names (or `default` when it names none), checked to be usable."""
    if request.uuid:
        return _existing(sysfs, request)
    wanted = request if request.named else (default or request)
    if not wanted.type_id:
        raise DeviceChoiceError(
            f"--mdev-parent {wanted.parent} names no type: pass --mdev-type too "
            f"(this host offers {offered(sysfs)})"
        )
    try:
        mdev_type = sysfs.find_type(wanted.type_id, wanted.parent)
    except MdevAmbiguousTypeError:
        parents = sorted({t.parent_name for t in sysfs.types() if t.type_id == wanted.type_id})
        raise DeviceChoiceError(
            f"mdev type {wanted.type_id} is offered by several parents ({', '.join(parents)}): "
            "pass --mdev-parent"
        ) from None
    except MdevNotFoundError:
        where = f" on parent {wanted.parent}" if wanted.parent else ""
        raise DeviceChoiceError(
            f"no mdev type {wanted.type_id}{where}: this host offers {offered(sysfs)}"
        ) from None
    available = mdev_type.available_instances
    if available < 1:
        raise DeviceChoiceError(
            f"mdev type {mdev_type.type_id} on parent {mdev_type.parent_name} has no instance "
            f"left (available_instances is {available}): remove its devices "
            f"({', '.join(mdev_type.device_uuids()) or 'none listed'}) or pick another type; "
            f"this host offers {offered(sysfs)}"
        )
    return Chosen(mdev_type, None)


def _existing(sysfs: MdevSysfs, request: DeviceRequest) -> Chosen:
    assert request.uuid is not None
    try:
        device = sysfs.device(request.uuid)
    except MdevNotFoundError:
        known = ", ".join(sysfs.device_uuids()) or "none"
        raise DeviceChoiceError(f"no mdev device {request.uuid} (devices here: {known})") from None
    mdev_type = device.mdev_type
    if request.type_id and request.type_id != mdev_type.type_id:
        raise DeviceChoiceError(
            f"mdev device {request.uuid} is of type {mdev_type.type_id}, not {request.type_id}"
        )
    if request.parent and request.parent != mdev_type.parent_name:
        raise DeviceChoiceError(
            f"mdev device {request.uuid} is on parent {mdev_type.parent_name}, not {request.parent}"
        )
    return Chosen(mdev_type, device)
