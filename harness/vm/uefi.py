# SPDX-License-Identifier: MIT
"""A VM's UEFI boot: the OVMF build its firmware mode boots, and in its run directory its own
copy of the variable store and of its image's ESP, whose grub.cfg holds this VM's kernel
command line (the run key, for one, differs per VM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.firmware import Firmware, FirmwareError
from harness.firmware.esp import with_grub_config
from harness.firmware.image_esp import image_esp
from harness.firmware.modes import firmware_needs_debian_kernels
from harness.firmware.ovmf import find_ovmf
from harness.firmware.varstore import copy_for_vm, prepared_varstore
from harness.images.build import BuiltImage
from harness.vm.qemu_cmdline import FirmwareDrives, VmSpec, kernel_command_line

VARSTORE_NAME = "vars.fd"
ESP_NAME = "esp.img"
# What OVMF, shim and GRUB add to a boot, calibrated for KVM like BOOT_TIMEOUT_S.
FIRMWARE_BOOT_S = 30.0


def firmware_drives(
    firmware: Firmware, run_dir: Path, *, custom_kernel: bool
) -> FirmwareDrives | None:
    if not firmware.uses_ovmf:
        return None
    if custom_kernel:
        raise FirmwareError(firmware_needs_debian_kernels(firmware))
    ovmf = find_ovmf(firmware)
    return FirmwareDrives(
        code=ovmf.code,
        varstore=run_dir / VARSTORE_NAME,
        esp=run_dir / ESP_NAME,
        smm=ovmf.smm,
    )


def prepare_firmware_files(
    spec: VmSpec,
    firmware: Firmware,
    image: BuiltImage,
    mok: Sequence[Path],
    varstore: Path | None = None,
) -> None:
    """Write the files `spec.firmware` names: the variable store (`varstore`, a saved state's,
    else a fresh copy of the prepared one), and the ESP with grub.cfg."""
    drives = spec.firmware
    if drives is None:
        return
    source = varstore or prepared_varstore(firmware, find_ovmf(firmware), mok)
    copy_for_vm(source, drives.varstore)
    with_grub_config(image_esp(image), kernel_command_line(spec), drives.esp)
