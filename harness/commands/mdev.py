# SPDX-License-Identifier: MIT
"""`vfio-harness mdev ...`: inspect and manage this host's mediated devices via sysfs."""

from __future__ import annotations

import argparse
import uuid

from harness.cli_errors import UsageError, UserError
from harness.mdev import MdevError, MdevNotFoundError, MdevSysfs


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mdev = commands.add_parser("mdev", help="list, create and remove mediated devices")
    mdev.add_argument("--sysfs-root", default="/", help="root of the sysfs tree (default: /)")
    actions = mdev.add_subparsers(dest="mdev_action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="parents, their types and devices")
    listing.set_defaults(handler=_list)

    create = actions.add_parser("create", help="create a device of a type")
    create.add_argument("type_id", help="type id, e.g. mtty-1")
    create.add_argument("--uuid", help="device UUID (default: a new random one)")
    create.add_argument("--parent", help="parent device, when several offer the type")
    create.set_defaults(handler=_create)

    remove = actions.add_parser("remove", help="remove a device by UUID")
    remove.add_argument("uuid")
    remove.set_defaults(handler=_remove)


def _sysfs(args: argparse.Namespace) -> MdevSysfs:
    return MdevSysfs(args.sysfs_root)


def _list(args: argparse.Namespace) -> int:
    sysfs = _sysfs(args)
    try:
        parents = sysfs.parents()
        if not parents:
            print("no mdev parent devices (is a vendor driver loaded?)")
            return 0
        for parent in parents:
            print(parent.name)
            for mdev_type in parent.types():
                print(
                    f"  {mdev_type.type_id}: {mdev_type.name or '-'} "
                    f"[{mdev_type.device_api}] available={mdev_type.available_instances}"
                )
                if mdev_type.description:
                    print(f"    {mdev_type.description.strip()}")
                for device in mdev_type.devices():
                    group = device.iommu_group
                    cdev = device.vfio_cdev
                    print(
                        f"    {device.uuid} group={group if group is not None else '-'}"
                        f" cdev={cdev or '-'}"
                    )
    except MdevError as exc:
        raise UserError(str(exc)) from None
    return 0


def _create(args: argparse.Namespace) -> int:
    if args.uuid is not None:
        try:
            uuid.UUID(args.uuid)
        except ValueError:
            raise UsageError(f"--uuid {args.uuid}: not a UUID") from None
    try:
        device = _sysfs(args).create(args.type_id, args.uuid, parent=args.parent)
    except MdevNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except MdevError as exc:
        raise UserError(str(exc)) from None
    print(device.uuid)
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        _sysfs(args).device(args.uuid).remove()
    except MdevNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except MdevError as exc:
        raise UserError(str(exc)) from None
    return 0
