# SPDX-License-Identifier: MIT
"""What a kernel image file says about itself: its kind, release, PVH entry and embedded config.

Read straight from the bytes, so a developer's bzImage or vmlinux needs no tool to be checked.
A vmlinux with debug info can be large: it is searched through mmap, never read whole.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from harness.images.vmlinux import ELF_MAGIC

ImageKind = Literal["bzimage", "elf"]

# x86 boot protocol: "HdrS" at 0x202; kernel_version (a pointer less 0x200) at 0x20e.
_HDRS_OFFSET = 0x202
_KERNEL_VERSION_OFFSET = 0x20E
_HEADER_BYTES = 0x10000
# linux_banner: "Linux version <release> (<builder>) #<n> ..."; "%s" versions are formats.
_BANNER = re.compile(rb"Linux version ([^\s%]+) \(")
# QEMU boots an ELF through its PVH entry: the note XEN_ELFNOTE_PHYS32_ENTRY of owner "Xen".
_PT_NOTE = 4
_XEN_ELFNOTE_PHYS32_ENTRY = 18
# CONFIG_IKCONFIG: the gzipped .config between these markers (kernel/configs.c).
_IKCONFIG_START = b"IKCFG_ST"
_IKCONFIG_END = b"IKCFG_ED"


def image_kind(path: Path) -> ImageKind | None:
    """'bzimage' or 'elf' by the file's header, None for anything else."""
    with path.open("rb") as stream:
        head = stream.read(_HDRS_OFFSET + 4)
    if head.startswith(ELF_MAGIC):
        return "elf"
    if head[_HDRS_OFFSET : _HDRS_OFFSET + 4] == b"HdrS":
        return "bzimage"
    return None


def kernel_release(path: Path) -> str | None:
    """The `uname -r` of a bzImage (setup header) or vmlinux (banner), None if not found."""
    kind = image_kind(path)
    if kind == "bzimage":
        with path.open("rb") as stream:
            return bzimage_release(stream.read(_HEADER_BYTES))
    if kind == "elf":
        with _mapped(path) as data:
            return banner_release(data)
    return None


def bzimage_release(header: bytes) -> str | None:
    if len(header) < _KERNEL_VERSION_OFFSET + 2:
        return None
    (pointer,) = struct.unpack_from("<H", header, _KERNEL_VERSION_OFFSET)
    start = pointer + 0x200
    text = header[start : header.find(b"\0", start)] if pointer else b""
    words = text.split()
    return words[0].decode(errors="replace") if words else None


def banner_release(data: bytes | mmap.mmap) -> str | None:
    match = _BANNER.search(data)
    return match.group(1).decode(errors="replace") if match else None


def has_pvh_entry(path: Path) -> bool:
    """Whether an x86_64 ELF kernel carries the PVH entry note QEMU's -kernel needs."""
    with _mapped(path) as data:
        return pvh_entry_in(data)


def pvh_entry_in(data: bytes | mmap.mmap) -> bool:
    if len(data) < 64 or data[:4] != ELF_MAGIC:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for index in range(phnum):
        entry = phoff + index * phentsize
        if entry + 40 > len(data):
            return False
        p_type, _flags, offset, _vaddr, _paddr, size = struct.unpack_from("<IIQQQQ", data, entry)
        if p_type == _PT_NOTE and _note_present(data, offset, offset + size):
            return True
    return False


def _note_present(data: bytes | mmap.mmap, position: int, end: int) -> bool:
    end = min(end, len(data))
    while position + 12 <= end:
        name_size, desc_size, note_type = struct.unpack_from("<III", data, position)
        name = bytes(data[position + 12 : position + 12 + name_size])
        if name == b"Xen\0" and note_type == _XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        position += 12 + ((name_size + 3) & ~3) + ((desc_size + 3) & ~3)
    return False


def embedded_config(path: Path) -> str | None:
    """The .config built into an uncompressed kernel (CONFIG_IKCONFIG=y), if there is one."""
    with _mapped(path) as data:
        start = data.find(_IKCONFIG_START)
        if start < 0:
            return None
        end = data.find(_IKCONFIG_END, start)
        blob = bytes(data[start + len(_IKCONFIG_START) : end if end > 0 else len(data)])
    try:
        # decompressobj stops at the stream's end: padding before the end marker is ignored.
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob).decode(errors="replace")
    except zlib.error:
        return None


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """A read-only mmap of the file (b"" for an empty file, which mmap refuses)."""
    with path.open("rb") as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data:
            yield data
