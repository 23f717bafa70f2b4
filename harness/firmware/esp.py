# SPDX-License-Identifier: MIT
"""EFI system partitions as raw FAT disks, written with mtools (no loop device, no root).

OVMF finds a FAT filesystem on a whole disk (no partition table needed) and boots its
removable-media path, EFI/BOOT/BOOTX64.EFI: Debian's signed shim, which loads grubx64.efi from
the same directory; Debian's signed GRUB then reads grub.cfg there ($cmdpath), which boots the
kernel and initrd at the top of the ESP. Under Secure Boot shim checks GRUB, and GRUB (through
shim) the kernel; neither grub.cfg (so the kernel command line) nor the initrd (the harness's
own, not Debian's) is checked.

An image's ESP is built once without grub.cfg; each VM gets a copy with a grub.cfg holding its
own kernel command line (`with_grub_config`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.firmware.errors import FirmwareError

LABEL = "HARNESSESP"  # FAT labels: 11 characters at most
BOOT_DIR = "::/EFI/BOOT"
GRUB_CONFIG = f"{BOOT_DIR}/grub.cfg"
KERNEL = "::/vmlinuz"
INITRD = "::/initrd.img"
SLACK_MIB = 8
MIN_MIB = 32
_GRUB_SAFE = re.compile(r"^[A-Za-z0-9_.,:=+/@ -]*$")
TOOLS_HINT = "install dosfstools and mtools: vfio-harness setup --profile firmware"


@dataclass(frozen=True)
class EspFiles:
    shim: Path  # EFI/BOOT/BOOTX64.EFI
    grub: Path  # EFI/BOOT/grubx64.efi
    mok_manager: Path  # EFI/BOOT/mmx64.efi: shim starts it when a MOK change is pending
    kernel: Path  # vmlinuz: signed, for Secure Boot
    initrd: Path

    def placed(self) -> list[tuple[Path, str]]:
        return [
            (self.shim, f"{BOOT_DIR}/BOOTX64.EFI"),
            (self.grub, f"{BOOT_DIR}/grubx64.efi"),
            (self.mok_manager, f"{BOOT_DIR}/mmx64.efi"),
            (self.kernel, KERNEL),
            (self.initrd, INITRD),
        ]


def size_mib(files: EspFiles) -> int:
    """Room for the files, grub.cfg and FAT's own tables."""
    total = sum(path.stat().st_size for path, _ in files.placed())
    return max(MIN_MIB, -(-total // (1 << 20)) + SLACK_MIB)


def grub_config(kernel_command_line: str) -> str:
    """GRUB's menu: the ESP's kernel and initrd, with `kernel_command_line` (only characters
    GRUB's lexer takes literally)."""
    if not _GRUB_SAFE.match(kernel_command_line):
        raise FirmwareError(f"kernel command line not safe in grub.cfg: {kernel_command_line!r}")
    return (
        "set timeout=0\n"
        "set default=0\n"
        'menuentry "vfio-harness" {\n'
        f"    search --no-floppy --set=root --label {LABEL}\n"
        f"    linux /vmlinuz {kernel_command_line}\n"
        "    initrd /initrd.img\n"
        "}\n"
    )


def _run(argv: Sequence[str], what: str) -> None:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError:
        raise FirmwareError(f"{what}: {argv[0]} not found: {TOOLS_HINT}") from None
    if result.returncode != 0:
        raise FirmwareError(f"{what}: {' '.join(argv)} exited {result.returncode}: "
                            f"{result.stderr.strip()[-400:]}")  # fmt: skip


def build_esp(files: EspFiles, out: Path) -> None:
    """A FAT disk at `out` holding `files` where the module docstring says."""
    with open(out, "wb") as disk:
        disk.truncate(size_mib(files) << 20)
    _run(["mkfs.vfat", "-n", LABEL, str(out)], "formatting the ESP")
    _run(["mmd", "-i", str(out), "::/EFI", BOOT_DIR], "making EFI/BOOT")
    for source, target in files.placed():
        _run(["mcopy", "-i", str(out), str(source), target], f"copying {source.name}")


def with_grub_config(esp: Path, kernel_command_line: str, out: Path) -> Path:
    """A copy of `esp` at `out` whose grub.cfg boots with `kernel_command_line`."""
    shutil.copyfile(esp, out)
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as config:
        config.write(grub_config(kernel_command_line))
    try:
        _run(["mcopy", "-o", "-i", str(out), config.name, GRUB_CONFIG], "writing grub.cfg")
    finally:
        os.unlink(config.name)
    return out
