# SPDX-License-Identifier: MIT
"""Debian's signed boot loaders for a suite, from the archive: shim (signed by Microsoft's UEFI
CA, and holding Debian's CA, which signs GRUB and the kernels) and GRUB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.debian.packages import unpacked_package
from harness.firmware.errors import FirmwareError
from harness.images.recipe import EspSpec

# Where Debian's packages keep each loader (x86-64).
SHIM_FILE = "usr/lib/shim/shimx64.efi.signed"
MOK_MANAGER_FILE = "usr/lib/shim/mmx64.efi.signed"
GRUB_FILE = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"


@dataclass(frozen=True)
class BootLoaders:
    shim: Path
    mok_manager: Path
    grub: Path


def _file(package: str, inner: str, suite: str) -> Path:
    path = unpacked_package(package, suite) / inner
    if not path.is_file():
        raise FirmwareError(f"{package} from {suite} has no {inner}")
    return path


def debian_boot_loaders(suite: str, packages: EspSpec) -> BootLoaders:
    """The loaders of a recipe's [esp] (`packages`), from `suite`."""
    return BootLoaders(
        shim=_file(packages.shim, SHIM_FILE, suite),
        mok_manager=_file(packages.mok_manager, MOK_MANAGER_FILE, suite),
        grub=_file(packages.grub, GRUB_FILE, suite),
    )
