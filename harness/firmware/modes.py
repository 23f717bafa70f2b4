# SPDX-License-Identifier: MIT
"""How a guest boots: QEMU loads the kernel itself, or OVMF boots it through shim and GRUB,
with Secure Boot off or on."""

from __future__ import annotations

import enum


class Firmware(enum.StrEnum):
    DIRECT = "direct"  # -kernel: no firmware, the fastest boot
    UEFI = "uefi"  # OVMF, Secure Boot off, the image's kernel from its ESP through shim/GRUB
    SECUREBOOT = "secureboot"  # the same with Secure Boot on: the kernel locks itself down

    @property
    def uses_ovmf(self) -> bool:
        return self is not Firmware.DIRECT

    @property
    def secure_boot(self) -> bool:
        return self is Firmware.SECUREBOOT
