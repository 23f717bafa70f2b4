# SPDX-License-Identifier: MIT
"""harness.core.cpio: newc archives, checked by our parser and by cpio(1)."""

from __future__ import annotations

import shutil
import stat
import subprocess

import pytest

from harness.core import cpio
from harness.nested.l2 import INIT, MODULE_NAME, initramfs_entries


def test_round_trip_keeps_every_entry() -> None:
    entries = [
        cpio.directory("dev"),
        cpio.char_device("dev/console", 5, 1),
        cpio.file("init", b"#!/bin/sh\n", executable=True),
        cpio.symlink("bin/sh", "busybox"),
        cpio.file("odd", b"x" * 5),
    ]
    data = cpio.archive(entries)
    assert len(data) % 4 == 0
    assert cpio.parse(data) == entries
    assert data == cpio.archive(entries)  # same input, same bytes


def test_bad_names_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        cpio.archive([cpio.directory("a"), cpio.directory("a")])
    with pytest.raises(ValueError, match="relative"):
        cpio.archive([cpio.directory("/a")])


def test_cpio_lists_what_we_wrote() -> None:
    cpio_tool = shutil.which("cpio")
    if cpio_tool is None:
        pytest.fail("cpio is missing: run `vfio-harness setup --profile unit`")
    entries = initramfs_entries(b"\x7fELF fake busybox", b"fake module")
    listing = subprocess.run(
        [cpio_tool, "-t", "-v", "--quiet"],
        input=cpio.archive(entries), capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    assert "dev/console" in listing and listing.count("\n") == len(entries)
    assert any(line.startswith("crw") and "5,   1" in line for line in listing.splitlines())


def test_the_l2_initramfs_has_init_busybox_and_the_driver() -> None:
    entries = {e.name: e for e in initramfs_entries(b"bb", b"ko")}
    assert entries["init"].data == INIT.encode()
    assert entries["init"].mode & stat.S_IXUSR
    assert entries["bin/sh"].data == b"busybox"
    assert entries[MODULE_NAME].data == b"ko"
    assert stat.S_ISCHR(entries["dev/console"].mode)
    assert MODULE_NAME not in {e.name for e in initramfs_entries(b"bb", None)}
    assert "insmod /hmdev_l2.ko" in INIT and "@@READY" in INIT
