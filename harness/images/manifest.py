# SPDX-License-Identifier: MIT
"""manifest.json: what a built image directory holds, written last so it marks completeness."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1


class ManifestError(ValueError):
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
        data = asdict(self)
        data["initrd_modules"] = list(self.initrd_modules)
        data["image_bytes"] = self.image_bytes
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path | None = None) -> ImageManifest:
        where = source or "manifest"
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where}: not JSON ({err}); delete the image to rebuild") from err
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(
                f"{where}: not a format-{MANIFEST_FORMAT} image manifest; delete the image "
                "directory to rebuild it"
            )
        data.pop("image_bytes", None)
        names = {f.name for f in fields(cls)}
        missing = names - set(data) - {"rootfs", "vmlinux", "initrd", "kernel_config", "format"}
        if missing or set(data) - names:
            raise ManifestError(
                f"{where}: fields missing {sorted(missing)} or unknown "
                f"{sorted(set(data) - names)}; delete the image directory to rebuild it"
            )
        data["initrd_modules"] = tuple(data["initrd_modules"])
        return cls(**data)

    def write(self, directory: Path) -> Path:
        path = directory / MANIFEST_NAME
        tmp = directory / f".{MANIFEST_NAME}.tmp"
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, directory: Path) -> ImageManifest:
        path = directory / MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ManifestError(f"{path}: cannot read ({err.strerror})") from err
        return cls.from_json(text, path)


def disk_usage(path: Path) -> int:
    """Bytes a file occupies on disk (allocated blocks, so sparse images count honestly)."""
    return path.stat().st_blocks * 512
