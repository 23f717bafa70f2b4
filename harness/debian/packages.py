# SPDX-License-Identifier: MIT
"""Debian packages unpacked into the harness cache, one directory per exact version.

A cache entry appears by a single rename of a fully unpacked tree, so its existence means it
is complete: an interrupted run leaves at most a hidden temporary directory, which the next
run for the same entry removes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build
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

    def unpack(scratch: Path) -> Path:
        download = scratch / ".deb"
        deb = archive.download(package, suite, download, version=version)
        extract_deb(deb, scratch)
        shutil.rmtree(download)
        return entry

    return cached_build(entry, unpack, _if_unpacked).value


def _if_unpacked(entry: Path) -> Path | None:
    return entry if entry.is_dir() else None


def unpacked_entry_path(package: str, suite: str, version: str) -> Path:
    # An epoch's ':' is legal in a file name but confuses tools that read PATH-like lists.
    return cache_dir("debian", "unpacked", package, suite) / version.replace(":", "%3a")


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
