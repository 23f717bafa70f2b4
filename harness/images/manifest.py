# SPDX-License-Identifier: MIT
"""manifest.json: what a built image directory holds, written last so it marks completeness."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.records import RecordError, parse_record, read_record, record_json, write_record

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


class ManifestError(RecordError):
    """manifest.json is missing, unreadable or not what this version of the harness writes."""


@dataclass(frozen=True)
class ImageManifest:
    """File names are relative to the image directory."""

    name: str
    suite: str
    key: str
    builder_version: int
    kernel_package: str
    kernel_release: str
    host_key: str  # the guest's SSH host public key, "ssh-ed25519 AAAA..."
    initrd_modules: tuple[str, ...]
    sizes: dict[str, int]  # bytes each file takes on disk (rootfs.img is sparse)
    rootfs_capacity: int  # the ext4 disk's apparent size in bytes
    build_seconds: float
    rootfs: str = "rootfs.img"
    vmlinux: str = "vmlinux"
    initrd: str = "initrd.img"
    kernel_config: str = "config"
    format: int = MANIFEST_FORMAT

    @property
    def image_bytes(self) -> int:
        return sum(self.sizes.values())

    def to_json(self) -> str:
        return record_json(self, image_bytes=self.image_bytes)

    @classmethod
    def from_json(cls, text: str, source: Path | None = None) -> ImageManifest:
        return parse_record(cls, text, source=source or "manifest", **_READ)

    def write(self, directory: Path) -> Path:
        return write_record(self, directory / MANIFEST_NAME, image_bytes=self.image_bytes)

    @classmethod
    def read(cls, directory: Path) -> ImageManifest:
        return read_record(cls, directory / MANIFEST_NAME, **_READ)


_READ: dict[str, Any] = {
    "fmt": MANIFEST_FORMAT,
    "redo": "delete the image directory to rebuild it",
    "ignored": ("image_bytes",),
    "error": ManifestError,
}


def disk_usage(path: Path) -> int:
    """Bytes a file occupies on disk (allocated blocks, so sparse images count honestly)."""
    return path.stat().st_blocks * 512
