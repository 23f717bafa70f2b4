# SPDX-License-Identifier: MIT
"""UEFI firmware for guests, below `vm` (which boots it): OVMF from Debian's `ovmf`, variable
stores prepared with virt-firmware (Secure Boot keys, shim's MokList), and the EFI system
partition through which an image's own signed kernel boots: Debian's signed shim and GRUB.
"""

from harness.firmware.errors import FirmwareError
from harness.firmware.modes import FIRMWARE_HELP, Firmware

__all__ = ["FIRMWARE_HELP", "Firmware", "FirmwareError"]
