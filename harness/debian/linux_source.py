# SPDX-License-Identifier: MIT
"""A few files of the kernel's source tree, taken from Debian's linux-source package.

    entry = source_files("checkpatch", "bookworm", {"scripts/checkpatch.pl": "checkpatch.pl"})
    entry.path / "checkpatch.pl", entry.package, entry.version

The package's .deb holds the whole tree as one linux-source-*.tar.xz (about 140 MB). The
members asked for are streamed out of it once into `<cache>/<purpose>/<package>_<version>/`,
which appears by one rename of a complete directory; later calls only ask apt (offline while
its lists are fresh) for the candidate version.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build
from harness.debian.archive import AptArchive
from harness.debian.mirror import host_codename
from harness.debian.packages import unpacked_package

# Debian release -> the linux-source package of its kernel series.
LINUX_SOURCE_PACKAGES = {"bookworm": "linux-source-6.1", "trixie": "linux-source-6.12"}


class LinuxSourceError(RuntimeError):
    """The source package has no such release, or its tarball is unreadable or incomplete."""


@dataclass(frozen=True)
class SourceFiles:
    path: Path  # the entry: the members under the names asked for
    package: str
    version: str
    suite: str


def source_package_for(suite: str | None) -> tuple[str, str]:
    """(suite, linux-source package): `suite`, or the host's Debian release."""
    chosen = suite or host_codename()
    if chosen not in LINUX_SOURCE_PACKAGES:
        known = ", ".join(LINUX_SOURCE_PACKAGES)
        raise LinuxSourceError(
            f"no linux-source package known for Debian {chosen or '(unknown host release)'}: "
            f"pass one of {known}"
        )
    return chosen, LINUX_SOURCE_PACKAGES[chosen]


def source_files(
    purpose: str,
    suite: str | None,
    members: Mapping[str, str],
    *,
    extra: Mapping[str, str] | None = None,
    mirror: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> SourceFiles:
    """`members` (paths below the tree's top directory -> names in the entry) of the
    linux-source package of `suite` (default: the host's release), extracted once, with the
    `extra` files (name -> text) of the caller's beside them."""
    chosen, package = source_package_for(suite)
    archive = AptArchive([chosen], mirror)
    version = archive.candidate_version(package, chosen)
    entry = cache_dir(purpose) / f"{package}_{version.replace(':', '%3a')}"
    found = SourceFiles(entry, package, version, chosen)

    def extract(scratch: Path) -> SourceFiles:
        progress(f"{purpose}: fetching {package} {version} from Debian {chosen} ...")
        unpacked = unpacked_package(package, chosen, archive=archive)
        extract_members(source_tarball(unpacked, package), members, scratch)
        for name, text in (extra or {}).items():
            (scratch / name).write_text(text, encoding="utf-8")
        return found

    return cached_build(entry, extract, lambda path: found if path.is_dir() else None).value


def source_tarball(unpacked: Path, package: str) -> Path:
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar.xz"))
    if len(tarballs) != 1:
        raise LinuxSourceError(
            f"{package} unpacked in {unpacked} holds {len(tarballs)} linux-source-*.tar.xz "
            "files, expected one: delete that directory to fetch the package again"
        )
    return tarballs[0]


def extract_members(tarball: Path, members: Mapping[str, str], dest: Path) -> None:
    """Copy `members` out of `tarball`'s top directory into `dest`, streaming, stopping once
    all are found. Only their bytes are taken: no name or mode from the archive is used."""
    wanted = dict(members)
    try:
        with tarfile.open(tarball, mode="r|xz") as archive:
            for member in archive:
                relative = member.name.partition("/")[2]
                name = wanted.get(relative)
                if name is None or not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read())
                del wanted[relative]
                if not wanted:
                    break
    except (tarfile.TarError, EOFError, OSError) as err:
        raise LinuxSourceError(
            f"cannot read {tarball} ({err}): delete it to fetch the package again"
        ) from err
    if wanted:
        raise LinuxSourceError(f"{tarball} has no {', '.join(sorted(wanted))}")
