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


FIRMWARE_HELP = (
    "how guests boot: direct (QEMU loads the kernel; the default and fastest), uefi (OVMF, "
    "Debian's signed shim and GRUB, the image's signed kernel), secureboot (the same with "
    "Secure Boot: the kernel is locked down and loads only modules signed with a key in shim's "
    "MokList)"
)


def firmware_needs_debian_kernels(firmware: Firmware) -> str:
    return (
        f"--firmware {firmware} boots the images' own signed Debian kernels through shim and "
        "GRUB: a kernel of your own (--kernel debug, --kernel-tree, a path) boots with "
        "--firmware direct"
    )
