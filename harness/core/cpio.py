# SPDX-License-Identifier: MIT
"""A newc ("070701") cpio archive, as the kernel unpacks an initramfs, in pure Python: the
initrd of every image and custom kernel (harness.images.initrd) and L2's initramfs, built in a
guest (harness.nested.l2).

Written here rather than with cpio(1) so that it needs no root for device nodes (an initramfs
carries /dev/console, which the kernel opens for init before anything could mount devtmpfs)
and is the same bytes for the same input (fixed inode numbers and mtime).
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
MTIME = 1_700_000_000


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the archive, without a leading "/"
    mode: int  # full st_mode: type bits and permissions
    data: bytes = b""  # file contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node


def directory(name: str) -> Entry:
    return Entry(name, stat.S_IFDIR | 0o755)


def file(name: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(name, stat.S_IFREG | (0o755 if executable else 0o644), data)


def symlink(name: str, target: str) -> Entry:
    return Entry(name, stat.S_IFLNK | 0o777, target.encode())


def char_device(name: str, major: int, minor: int) -> Entry:
    return Entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def header(entry: Entry, ino: int) -> bytes:
    name = entry.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, MTIME, len(entry.data), 0, 0, *entry.rdev,
              len(name), 0)  # fmt: skip
    raw = MAGIC + b"".join(b"%08x" % value for value in fields) + name
    return raw + _pad(len(raw))


def archive(entries: list[Entry]) -> bytes:
    """The archive of `entries` in order (parents before children), with its trailer."""
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise ValueError("duplicate names in the archive")
    for entry in entries:
        if entry.name.startswith("/") or not entry.name:
            raise ValueError(f"archive names are relative and non-empty: {entry.name!r}")
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry(TRAILER, 0)], start=1):
        out += header(entry, ino if entry.name != TRAILER else 0)
        out += entry.data + _pad(len(entry.data))
    return bytes(out)


def parse(data: bytes) -> list[Entry]:
    """The entries of a newc archive (for tests and for checking what was built)."""
    entries: list[Entry] = []
    offset = 0
    while True:
        if data[offset : offset + 6] != MAGIC:
            raise ValueError(f"no newc header at offset {offset}")
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, namesize = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        body = name_start + namesize + _pad_len(110 + namesize)
        if name == TRAILER:
            return entries
        entries.append(Entry(name, mode, data[body : body + size], rdev))
        offset = body + size + _pad_len(size)


def _pad_len(length: int) -> int:
    return -length % 4
