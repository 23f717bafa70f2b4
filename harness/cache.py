# SPDX-License-Identifier: MIT
"""Where the harness keeps what it builds or downloads (images, headers, modules)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/vfio-harness, else ~/.cache/vfio-harness."""
    explicit = os.environ.get("HARNESS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vfio-harness"


def cache_dir(*parts: str) -> Path:
    """A sub-directory of the cache, created on first use, with symlinks resolved: paths into
    the cache end up in QEMU command lines and saved-state keys, which must not depend on
    the route taken to the same files."""
    path = cache_root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
