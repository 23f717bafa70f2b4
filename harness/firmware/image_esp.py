# SPDX-License-Identifier: MIT
"""An image's EFI system partition: the signed shim and GRUB its recipe's [esp] names, from the
image's suite; the image's own signed kernel (/boot/vmlinuz-<release>, read out of its root
disk with debugfs) and its initrd. Cached per image."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build, file_sha256, prune
from harness.core.records import RecordError, read_record, write_record
from harness.firmware.boot_files import debian_boot_loaders
from harness.firmware.errors import FirmwareError
from harness.firmware.esp import EspFiles, build_esp
from harness.images.build import BuiltImage, resolve_recipe

ESP_FILE = "esp.img"
RECORD_FILE = "record.json"
RECORD_FORMAT = 1
BUILDER_VERSION = 1


@dataclass(frozen=True)
class EspRecord:
    image_key: str
    shim_sha256: str
    grub_sha256: str
    mok_manager_sha256: str
    builder_version: int = BUILDER_VERSION
    format: int = RECORD_FORMAT


def extract_kernel(image: BuiltImage, out: Path) -> Path:
    """The image's signed vmlinuz, copied out of its ext4 root disk."""
    inner = f"/boot/vmlinuz-{image.kernel_release}"
    try:
        result = subprocess.run(
            ["debugfs", "-R", f"dump {inner} {out}", str(image.rootfs)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise FirmwareError("debugfs not found: vfio-harness setup --profile firmware") from None
    if result.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise FirmwareError(
            f"{image.manifest.name}: no {inner} in its root disk ({result.stderr.strip()[-200:]})"
        )
    return out


def image_esp(image: BuiltImage) -> Path:
    """The image's ESP, without grub.cfg (each VM writes its own: esp.with_grub_config).

    Keyed by the image alone: the loaders are fetched once, when it is first built, and stay
    with the image (a newer shim's SBAT could otherwise revoke the image's own GRUB, and a
    restore would need the archive)."""
    entry = cache_dir("firmware", "esp") / image.manifest.key

    def build(scratch: Path) -> Path:
        recipe = resolve_recipe(image.manifest.name)
        loaders = debian_boot_loaders(image.manifest.suite, recipe.esp)
        kernel = extract_kernel(image, scratch / "vmlinuz")
        files = EspFiles(
            shim=loaders.shim,
            grub=loaders.grub,
            mok_manager=loaders.mok_manager,
            kernel=kernel,
            initrd=image.initrd,
        )
        build_esp(files, scratch / ESP_FILE)
        kernel.unlink()
        record = EspRecord(
            image_key=image.manifest.key,
            shim_sha256=file_sha256(loaders.shim),
            grub_sha256=file_sha256(loaders.grub),
            mok_manager_sha256=file_sha256(loaders.mok_manager),
        )
        write_record(record, scratch / RECORD_FILE)
        return entry / ESP_FILE

    def read(path: Path) -> Path | None:
        try:
            read_record(EspRecord, path / RECORD_FILE, fmt=RECORD_FORMAT, redo="rebuild")
        except RecordError:
            return None
        return path / ESP_FILE

    built = cached_build(entry, build, read)
    prune_orphans(entry.parent, image.directory.parent, current=built.path)
    return built.value


def prune_orphans(esp_root: Path, images: Path, *, current: Path) -> list[Path]:
    """Delete the ESPs of images the image cache no longer has (it keeps a few per recipe)."""
    orphans = [
        (0.0, esp)
        for esp in esp_root.iterdir()
        if not esp.name.startswith(".") and esp.is_dir() and not (images / esp.name).is_dir()
    ]
    return prune(orphans, 0, current=current)
