# SPDX-License-Identifier: MIT
"""Per-VM copy-on-write disks: a qcow2 overlay on a shared, never-written base image.

Each VM writes only to its overlay, so every VM starts from the pristine base and removing the
run directory removes all it changed. The backing file is recorded as an absolute path: the
overlay is created in a run directory far from the image cache, and a relative backing path
would be resolved against the overlay's directory.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

BaseFormat = Literal["raw", "qcow2"]
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[bytes]"]


class OverlayError(RuntimeError):
    """qemu-img could not create the overlay."""


def base_format_of(base: Path) -> BaseFormat:
    """qcow2 when the file starts with qcow2's magic, raw otherwise (QEMU's own rule)."""
    with base.open("rb") as stream:
        return "qcow2" if stream.read(4) == b"QFI\xfb" else "raw"


def overlay_command(
    base: Path, overlay: Path, base_format: BaseFormat, qemu_img: str = "qemu-img"
) -> list[str]:
    if not base.is_absolute():
        raise ValueError(f"backing file must be absolute, not {base}")
    return [qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", base_format,
            str(overlay)]  # fmt: skip


def create_overlay(
    base: Path,
    run_dir: Path,
    name: str = "root.qcow2",
    *,
    base_format: BaseFormat | None = None,
    runner: Runner | None = None,
) -> Path:
    """Create `run_dir/name` backed by `base` (made absolute); return its path.

    The format of the base is always given (`-F`): QEMU refuses to guess it for a backing
    file, because a guest could write a qcow2 header into a raw image.
    """
    base = base.resolve()
    if not base.is_file():
        raise OverlayError(f"base image {base} does not exist")
    overlay = run_dir / name
    if overlay.exists():
        raise OverlayError(f"{overlay} already exists: a VM's overlay is never reused")
    fmt = base_format or base_format_of(base)
    run = runner or _run
    result = run(overlay_command(base, overlay, fmt))
    if result.returncode != 0:
        overlay.unlink(missing_ok=True)
        message = result.stderr.decode(errors="replace").strip() if result.stderr else ""
        raise OverlayError(f"qemu-img create {overlay} failed: {message or result.returncode}")
    return overlay


def _run(command: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, capture_output=True, check=False)
