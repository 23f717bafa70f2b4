# SPDX-License-Identifier: MIT
"""`vfio-harness run`'s device check before the suite starts: where the device lives (the first
kernel's VM with the driver loaded, or this host), is the type, parent or UUID asked for there
(a usage error listing what is, otherwise), and what does its driver offer. The profile goes to
the reports as profile.json and is printed in one paragraph.

The VM boots with the run's --firmware, and under Secure Boot loads the module signed as the
suite will: a driver Secure Boot refuses is found here, before the suite, and the state this
VM saves is the one the suite's VMs restore.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli_errors import UsageError, UserError
from harness.commands.run_prepare import Prepared, progress

if TYPE_CHECKING:
    from harness.firmware import Firmware

CHECK_SCRIPT = "import sys\nfrom harness.plugin.device_check import main\nsys.exit(main())\n"
PROFILE_FILE = "profile.json"


def check_device(
    args: argparse.Namespace, prepared: list[Prepared], reports: Path, expected: list[str]
) -> dict[str, Any]:
    """The device check's result; UsageError when the device asked for is not there."""
    if args.target == "local":
        from harness.mdev.choice import DeviceRequest
        from harness.plugin.device_check import check_device as check_here

        where = "this host"
        result = check_here(DeviceRequest(args.mdev_type, args.mdev_parent, args.mdev_uuid))
    else:
        where = prepared[0].choice.id
        result = _check_in_vm(args, prepared[0])
    if "error" in result:
        raise UsageError(f"{where}: {result['error']}")
    (reports / PROFILE_FILE).write_text(json.dumps(result, indent=2) + "\n")
    print(describe(result, expected), flush=True)
    return result


def _check_in_vm(args: argparse.Namespace, first: Prepared) -> dict[str, Any]:
    from harness.firmware import Firmware
    from harness.plugin.guest_items import mdev_environment_of
    from harness.plugin.guest_vm import GuestVm, VendorModule
    from harness.vm.guest_python import run_guest_python
    from harness.vm.saved_state import start_vm

    params = (f"fault={args.module_faults}",) if args.module_faults else ()
    firmware = Firmware(args.firmware)
    progress(f"{first.choice.id}: checking the device before the suite")
    try:
        module, mok = _module_for(firmware, args, first)
        with start_vm(
            first.image, kernel=first.bundle, progress=progress, firmware=firmware, mok=mok
        ) as vm:
            GuestVm(vm, progress).load_module(VendorModule.read(module, params))
            run = run_guest_python(
                vm, CHECK_SCRIPT, env=mdev_environment_of(args), check=False, timeout=300
            )
    except Exception as exc:  # a VM that does not start or a driver that does not load
        raise UserError(f"{first.choice.id}: the device check could not run: {exc}") from None
    lines = run.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise UserError(
            f"{first.choice.id}: the device check printed no result (exit {run.exit_status}):\n"
            f"{run.stderr[-2000:]}"
        ) from None
    return result


def _module_for(
    firmware: Firmware, args: argparse.Namespace, first: Prepared
) -> tuple[Path, tuple[Path, ...]]:
    """The module as the first kernel's VM loads it, and the certificates its MokList holds."""
    if not firmware.secure_boot:
        return first.module, ()
    from harness.kmod.build_env import build_env_for
    from harness.kmod.signing import module_for_secure_boot, mok_for, signing_identity

    key, cert = args.signing_key, args.signing_cert
    identity = signing_identity(
        key.expanduser() if key else None, cert.expanduser() if cert else None
    )
    signed = module_for_secure_boot(first.module, identity, lambda: build_env_for(first.image))
    return signed, mok_for(firmware, identity)


def describe(result: dict[str, Any], expected: list[str]) -> str:
    """One paragraph: the device, its regions and IRQs, what it offers and lacks."""
    from harness.uapi.profile import CAPABILITIES

    profile = result["profile"]
    offers = set(profile["capabilities"])
    regions = ", ".join(
        f"{r['index']}:{_size(r['size'])}{'r' if r['flags'] & 1 else ''}"
        f"{'w' if r['flags'] & 2 else ''}{'m' if r['mmap_areas'] else ''}"
        for r in profile["regions"]
        if r["size"]
    )
    irqs = ", ".join(f"{i['index']}:{i['count']}" for i in profile["irqs"] if i["count"])
    missing = [name for name in expected if name not in offers]
    text = (
        f"device: {result['type']} on parent {result['parent']} (driver {result['driver']}, "
        f"{profile['device_api']}); regions {regions or 'none'}; IRQ vectors {irqs or 'none'}; "
        f"offers {', '.join(sorted(offers)) or 'nothing'}; "
        f"lacks {', '.join(n for n in CAPABILITIES if n not in offers) or 'nothing'}"
    )
    if missing:
        text += f"\n  --expect: the driver lacks {', '.join(missing)}: the tests that need it fail"
    return text


def _size(size: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"
