# SPDX-License-Identifier: MIT
"""manifest.json of a module build environment, written last so it marks a complete chroot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.records import RecordError, parse_record, read_record, record_json, write_record

ENV_MANIFEST_NAME = "manifest.json"
ENV_MANIFEST_FORMAT = 1


class EnvManifestError(RecordError):
    """manifest.json is missing, unreadable or of another format."""


@dataclass(frozen=True)
class EnvManifest:
    """What a build environment holds; paths starting with / are inside the chroot."""

    key: str
    suite: str
    variant: str
    packages: tuple[str, ...]  # as given to mmdebstrap, the exact headers package included
    kernel_release: str
    headers_dir: str  # /usr/src/linux-headers-<release>
    compiler: str  # the kernel's compiler command, from its CONFIG_CC_VERSION_TEXT
    gcc_version: str  # `<compiler> -dumpfullversion` in the chroot, e.g. "14.2.0"
    builder_version: int
    size_bytes: int  # allocated on disk
    build_seconds: float
    format: int = ENV_MANIFEST_FORMAT

    def to_json(self) -> str:
        return record_json(self)

    @classmethod
    def from_json(cls, text: str, source: Path) -> EnvManifest:
        return parse_record(cls, text, source=source, **_read_options(source.parent))

    def write(self, directory: Path) -> None:
        write_record(self, directory / ENV_MANIFEST_NAME)

    @classmethod
    def read(cls, directory: Path) -> EnvManifest:
        return read_record(cls, directory / ENV_MANIFEST_NAME, **_read_options(directory))


def _read_options(directory: Path) -> dict[str, Any]:
    return {
        "fmt": ENV_MANIFEST_FORMAT,
        "redo": f"delete {directory} to rebuild the environment",
        "error": EnvManifestError,
    }
