# SPDX-License-Identifier: MIT
"""manifest.json of a module build environment, written last so it marks a complete chroot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

ENV_MANIFEST_NAME = "manifest.json"
ENV_MANIFEST_FORMAT = 1


class EnvManifestError(ValueError):
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
        data = asdict(self)
        data["packages"] = list(self.packages)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> EnvManifest:
        redo = f"delete {source.parent} to rebuild the environment"
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as err:
            raise EnvManifestError(f"{source}: not JSON ({err}); {redo}") from err
        if not isinstance(data, dict) or data.get("format") != ENV_MANIFEST_FORMAT:
            raise EnvManifestError(f"{source}: not a format-{ENV_MANIFEST_FORMAT} manifest; {redo}")
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise EnvManifestError(
                f"{source}: fields missing {sorted(names - set(data))} or unknown "
                f"{sorted(set(data) - names)}; {redo}"
            )
        data["packages"] = tuple(data["packages"])
        return cls(**data)

    def write(self, directory: Path) -> None:
        tmp = directory / f".{ENV_MANIFEST_NAME}.tmp"
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(directory / ENV_MANIFEST_NAME)

    @classmethod
    def read(cls, directory: Path) -> EnvManifest:
        path = directory / ENV_MANIFEST_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise EnvManifestError(f"{path}: cannot read ({err.strerror})") from err
        return cls.from_json(text, path)
