# SPDX-License-Identifier: MIT
"""`vfio-harness run`'s options checked before anything is built: a run that could only test
nothing, or not what was asked, is refused with a UsageError that says what to pass instead."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli_errors import UsageError
from harness.firmware.modes import firmware_needs_debian_kernels

EXPECT_ENV = "HARNESS_EXPECT"


def check_options(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise UsageError(f"-n {args.workers}: give 1 or more parallel VMs")
    if args.config_fragment and args.kernel_tree is None:
        raise UsageError("--config-fragment goes with --kernel-tree")
    if args.shard:
        from harness.plugin.shard import parse_shard

        try:
            parse_shard(args.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    _check_target(args)
    _check_driver(args)
    _check_device(args)
    _check_firmware(args)
    expected_capabilities(args.expect)


def _check_firmware(args: argparse.Namespace) -> None:
    """--firmware's needs, before anything is built: OVMF installed, Debian's signed kernels
    (shim and GRUB boot no other), a usable signing key and certificate."""
    from harness.firmware import Firmware, FirmwareError
    from harness.firmware.ovmf import find_ovmf
    from harness.kernel.choice import KernelChoiceError, parse_kernels
    from harness.kmod.signing import SigningError, check_identity

    firmware = Firmware(args.firmware)
    if (args.signing_key or args.signing_cert) and not firmware.secure_boot:
        raise UsageError("--signing-key and --signing-cert are for --firmware secureboot")
    if not firmware.uses_ovmf:
        return
    if args.target != "vm":
        raise UsageError("--firmware is how VMs boot: not with --target local")
    try:
        own = [c.id for c in parse_kernels(args.kernel or "bookworm") if c.own_kernel]
    except KernelChoiceError:
        own = []  # said later, where --kernel is checked
    if args.kernel_tree is not None or own:
        raise UsageError(firmware_needs_debian_kernels(firmware))
    try:
        if args.signing_cert is not None:
            key = args.signing_key.expanduser() if args.signing_key else None
            check_identity(key, args.signing_cert.expanduser())
        elif args.signing_key is not None:
            raise SigningError("--signing-key needs its certificate: --signing-cert")
        find_ovmf(firmware)
    except (FirmwareError, SigningError) as exc:
        raise UsageError(str(exc)) from None


def _check_target(args: argparse.Namespace) -> None:
    if args.target == "vm":
        return
    for option in ("kernel", "kernel_tree", "vendor_module", "vendor_src", "vendor_sample"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise UsageError(
                f"{flag} is for VMs: with --target local the suite tests this host's own "
                "kernel and the driver you have loaded"
            )
    if args.module_faults:
        raise UsageError("--module-faults loads our module in VMs: not with --target local")
    if args.coverage:
        raise UsageError("--coverage reads the counters of our VMs' kernels: not with --target "
                         "local")  # fmt: skip


def _check_driver(args: argparse.Namespace) -> None:
    given = [o for o in ("vendor_module", "vendor_src", "vendor_sample") if getattr(args, o)]
    if len(given) > 1:
        flags = " and ".join("--" + o.replace("_", "-") for o in given)
        raise UsageError(f"{flags} all name the driver: give one")
    if args.vendor_module is not None:
        path = Path(args.vendor_module).expanduser()
        if not path.is_file():
            raise UsageError(f"--vendor-module {args.vendor_module}: no such file")
        if not path.name.endswith(".ko"):
            raise UsageError(f"--vendor-module {args.vendor_module}: not a kernel module (.ko)")
    if args.vendor_src is not None:
        path = Path(args.vendor_src).expanduser()
        if not ((path / "Kbuild").is_file() or (path / "Makefile").is_file()):
            raise UsageError(
                f"--vendor-src {args.vendor_src}: no Kbuild or Makefile there; point it at "
                "the directory you would run `make M=` on"
            )
    vendor = args.vendor_module is not None or args.vendor_src is not None or args.vendor_sample
    if vendor and args.module_faults:
        raise UsageError(
            "--module-faults is for our module's fault-injection build, not a vendor's"
        )


def _check_device(args: argparse.Namespace) -> None:
    if args.mdev_uuid and (args.mdev_type or args.mdev_parent):
        raise UsageError("--mdev-uuid names the device, its type and parent: give it alone")
    if args.mdev_parent and not args.mdev_type:
        raise UsageError("--mdev-parent goes with --mdev-type (the type to create on it)")
    vendor = args.vendor_module is not None or args.vendor_src is not None or args.vendor_sample
    if vendor and not (args.mdev_type or args.mdev_uuid):
        raise UsageError(
            "name the vendor driver's device to test: --mdev-type TYPE (and --mdev-parent "
            "when several parents offer it) or --mdev-uuid UUID"
        )


def expected_capabilities(value: str | None) -> list[str]:
    """--expect's names, checked against harness.uapi.profile.CAPABILITIES."""
    from harness.uapi.profile import CAPABILITIES

    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown:
        raise UsageError(
            f"--expect {', '.join(unknown)}: not a capability; known: {', '.join(CAPABILITIES)}"
        )
    return names
