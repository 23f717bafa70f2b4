# SPDX-License-Identifier: MIT
"""Files taken out of a linux-source tarball: only those asked for, under our names."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from harness.debian.linux_source import LinuxSourceError, extract_members, source_package_for


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o777
            archive.addfile(info, io.BytesIO(data))
    return path


def test_only_the_wanted_members_are_extracted_under_our_names(tmp_path: Path) -> None:
    tarball = _tarball(
        tmp_path / "linux-source-9.9.tar.xz",
        {
            "linux-source-9.9/Makefile": b"all:\n",
            "linux-source-9.9/scripts/checkpatch.pl": b"#!/usr/bin/perl\n",
            "linux-source-9.9/samples/vfio-mdev/mtty.c": b"/* mtty */\n",
            "linux-source-9.9/samples/vfio-mdev/mdpy.c": b"/* mdpy */\n",
        },
    )
    members = {"scripts/checkpatch.pl": "tools/checkpatch.pl", "samples/vfio-mdev/mtty.c": "m.c"}
    extract_members(tarball, members, tmp_path / "out")
    found = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert found == ["m.c", "tools", "tools/checkpatch.pl"]
    assert (tmp_path / "out" / "m.c").read_bytes() == b"/* mtty */\n"
    assert not (tmp_path / "out" / "m.c").stat().st_mode & 0o111  # no mode from the archive


def test_a_missing_member_is_named(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path / "empty.tar.xz", {"linux-source-9.9/Makefile": b""})
    with pytest.raises(LinuxSourceError, match=r"has no samples/vfio-mdev/mtty\.c"):
        extract_members(tarball, {"samples/vfio-mdev/mtty.c": "mtty.c"}, tmp_path / "out")


def test_a_corrupt_tarball_says_to_fetch_it_again(tmp_path: Path) -> None:
    (tmp_path / "bad.tar.xz").write_bytes(b"not xz")
    with pytest.raises(LinuxSourceError, match="fetch the package again"):
        extract_members(tmp_path / "bad.tar.xz", {"Makefile": "Makefile"}, tmp_path / "out")


def test_unknown_suites_say_which_are_known() -> None:
    assert source_package_for("trixie") == ("trixie", "linux-source-6.12")
    with pytest.raises(LinuxSourceError, match="bookworm, trixie"):
        source_package_for("buster")
