# SPDX-License-Identifier: MIT
"""Debian packages unpacked into the harness cache, one directory per exact version.

A cache entry appears by a single rename of a fully unpacked tree, so its existence means it
is complete: an interrupted run leaves at most a hidden temporary directory, which the next
run for the same entry removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.core.cache import cache_dir
from harness.debian.archive import (
    AptArchive,
    stderr_tail,
    validate_package_name,
    validate_suite_name,
)


class PackageUnpackError(RuntimeError):
    """dpkg-deb could not unpack a downloaded package."""


def unpacked_package(
    package: str,
    suite: str,
    *,
    mirror: str | None = None,
    archive: AptArchive | None = None,
) -> Path:
    """A directory holding `package` from Debian `suite`, unpacked with `dpkg-deb -x`.

    Keyed by package, suite and the exact candidate version, so a new upload to the suite
    gives a new entry. Warm calls only ask apt (offline) for the candidate version; the
    package lists are refreshed when older than the archive's maximum age. Contents are
    identical across mirrors, so the mirror is not part of the key.

    `archive` replaces the default `AptArchive([suite], mirror)`, e.g. to share one apt
    state between several suites or to inject a runner in tests.
    """
    validate_package_name(package)
    validate_suite_name(suite)
    if archive is None:
        archive = AptArchive([suite], mirror)
    elif mirror is not None:
        raise ValueError("pass either mirror or archive, not both")
    version = archive.candidate_version(package, suite)
    entry = unpacked_entry_path(package, suite, version)
    if entry.is_dir():
        return entry
    with _entry_lock(entry):
        if not entry.is_dir():  # another process may have built it while we waited
            _build_entry(archive, package, suite, version, entry)
    return entry


def unpacked_entry_path(package: str, suite: str, version: str) -> Path:
    # An epoch's ':' is legal in a file name but confuses tools that read PATH-like lists.
    return cache_dir("debian", "unpacked", package, suite) / version.replace(":", "%3a")


def _build_entry(archive: AptArchive, package: str, suite: str, version: str, entry: Path) -> None:
    _remove_leftovers(entry)
    scratch = Path(tempfile.mkdtemp(prefix=_scratch_prefix(entry), dir=entry.parent))
    try:
        deb = archive.download(package, suite, scratch / "deb", version=version)
        root = scratch / "root"
        extract_deb(deb, root)
        root.rename(entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def extract_deb(deb: Path, dest: Path) -> None:
    """`dpkg-deb -x`: the data files only; no maintainer scripts, no root needed."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(dest)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as err:
        raise PackageUnpackError(
            "dpkg-deb not found: unpacking needs dpkg (a Debian host)"
        ) from err
    if result.returncode != 0:
        raise PackageUnpackError(
            f"dpkg-deb -x {deb.name} failed (exit {result.returncode}):\n"
            f"{stderr_tail(result.stderr)}\n"
            "The download may be corrupt; run again to fetch it anew."
        )


def _scratch_prefix(entry: Path) -> str:
    return f".{entry.name}.tmp-"


def _remove_leftovers(entry: Path) -> None:
    """Scratch directories of runs killed mid-unpack; safe to delete under the entry lock."""
    for leftover in entry.parent.glob(_scratch_prefix(entry) + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _entry_lock(entry: Path) -> Iterator[None]:
    with entry.with_name(f".{entry.name}.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
