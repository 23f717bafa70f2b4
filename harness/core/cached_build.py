# SPDX-License-Identifier: MIT
"""One pattern for every cache entry the harness builds: its inputs make its key (its name), it
is built in a scratch directory beside it, published by one rename, and what it supersedes is
pruned. Builders say only what their inputs and their build are.

    result = cached_build(root / key, build=make_it, read=read_record)
    result.value, result.how          # how: "cached", "built", or "another" (another worker)
    prune(newest_first, keep=2, current=result.path)
    prune_least_used(root, keep=8, current=result.path)   # entries used() marks

An entry exists only when complete: `read(entry)` gives None for a missing or incomplete entry
(no record yet), and the build then runs under the entry's lock (harness.core.cache.entry_lock)
so that parallel workers build it once. `build(scratch)` fills `.<key>.tmp-*`, which is renamed
into place when it returns and deleted when it raises. Scratch directories of killed builds are
removed under the lock; a rebuild moves the old entry aside before the new one lands.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from harness.core.cache import entry_lock

T = TypeVar("T")
How = Literal["cached", "built", "another"]


def input_key(inputs: Any, length: int = 16) -> str:
    """A stable hash of JSON-able `inputs` (dict keys sorted), to name an entry by."""
    encoded = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """A file's content as an input of a key."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class Cached(Generic[T]):
    value: T
    path: Path
    how: How


def cached_build(
    entry: Path,
    build: Callable[[Path], T],
    read: Callable[[Path], T | None],
    *,
    rebuild: bool = False,
    remove: Callable[[Path], None] = remove_dir,
) -> Cached[T]:
    """`read(entry)` when it is there; else `build` it, once, whoever asks at the same time.
    `remove` deletes a tree (a root filesystem needs harness.images.rootfs.remove_tree)."""
    if not rebuild:
        found = read(entry)
        if found is not None:
            return Cached(found, entry, "cached")
    with entry_lock(entry):
        found = None if rebuild else read(entry)
        if found is not None:
            return Cached(found, entry, "another")
        remove_leftovers(entry, remove)
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
        try:
            value = build(scratch)
            if entry.exists():  # a rebuild, or an entry without its record
                old = entry.with_name(f".{entry.name}.old-{time.time_ns()}")
                entry.rename(old)
                remove(old)
            scratch.chmod(0o755)  # mkdtemp made it private; the cache is for every user
            scratch.rename(entry)
        finally:
            if scratch.exists():
                remove(scratch)
    return Cached(value, entry, "built")


def remove_leftovers(entry: Path, remove: Callable[[Path], None] = remove_dir) -> None:
    """Scratch and set-aside directories of killed builds; safe to delete under the lock."""
    for pattern in (f".{entry.name}.tmp-*", f".{entry.name}.old-*"):
        for leftover in entry.parent.glob(pattern):
            remove(leftover)


def prune(
    entries: Iterable[tuple[float, Path]],
    keep: int,
    *,
    current: Path | None = None,
    remove: Callable[[Path], None] = remove_dir,
) -> list[Path]:
    """Delete all but the `keep` newest of `entries` ((age stamp, path): a larger stamp is
    newer), never `current`, with their lock files; the ones deleted."""
    ordered = sorted(entries, key=lambda pair: pair[0], reverse=True)
    doomed = [path for _, path in ordered[keep:] if path != current]
    for path in doomed:
        remove(path)
        path.with_name(f".{path.name}.lock").unlink(missing_ok=True)
    return doomed


def used(entry: Path) -> Path:
    """Marks `entry` as just used (its mtime), for prune_least_used; returns it."""
    with contextlib.suppress(OSError):
        os.utime(entry)
    return entry


def prune_least_used(
    root: Path, keep: int, *, current: Path, remove: Callable[[Path], None] = remove_dir
) -> list[Path]:
    """Delete all but the `keep` most recently used entries in `root` (never `current`), for
    caches whose entries nothing supersedes (one per input, such as a key or a module)."""
    entries = []
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime, path))
    return prune(entries, keep, current=current, remove=remove)
