# SPDX-License-Identifier: MIT
"""Where the harness keeps what it builds or downloads (images, headers, modules)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
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


@contextlib.contextmanager
def entry_lock(entry: Path) -> Iterator[None]:
    """Hold `.<entry>.lock` beside a cache entry (fcntl, exclusive) while building it, so
    parallel workers build an entry once."""
    with entry.with_name(f".{entry.name}.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
