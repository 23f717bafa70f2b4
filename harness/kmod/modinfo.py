# SPDX-License-Identifier: MIT
"""What a built .ko says about itself, read from its ELF sections on any host.

`.modinfo` holds NUL-separated `key=value` strings (vermagic, license, parm, ...); `.comment`
holds one `GCC: (Debian 14.2.0-19) 14.2.0` string per compiler that produced an object in it.
The host has no kmod (so no `modinfo`), and this needs none.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

_ELF_MAGIC = b"\x7fELF"
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_SHT_NOBITS = 8
# Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize.
_SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")


class ModinfoError(ValueError):
    """The file is not a 64-bit little-endian ELF object, or a section is malformed."""


@dataclass(frozen=True)
class ModuleInfo:
    fields: dict[str, tuple[str, ...]]  # .modinfo keys; a key may repeat (parm, alias)
    compilers: tuple[str, ...]  # .comment strings, e.g. "GCC: (Debian 14.2.0-19) 14.2.0"

    def first(self, key: str) -> str | None:
        values = self.fields.get(key, ())
        return values[0] if values else None

    @property
    def vermagic(self) -> str:
        return self.first("vermagic") or ""

    @property
    def kernel_release(self) -> str:
        """The release a kernel checks on load: vermagic's first word."""
        return self.vermagic.split(" ", 1)[0]

    @property
    def gcc_versions(self) -> tuple[str, ...]:
        """Distinct GCC versions that compiled the module's objects, e.g. ("14.2.0",)."""
        found = [c.rsplit(" ", 1)[-1] for c in self.compilers if c.startswith("GCC:")]
        return tuple(dict.fromkeys(found))


def elf_sections(data: bytes, where: str = "ELF file") -> dict[str, bytes]:
    """Every section with contents, by name."""
    if len(data) < 64 or data[:4] != _ELF_MAGIC:
        raise ModinfoError(f"{where}: not an ELF file")
    if data[4] != _ELFCLASS64 or data[5] != _ELFDATA2LSB:
        raise ModinfoError(f"{where}: not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shentsize != _SECTION_HEADER.size or shstrndx >= shnum:
        raise ModinfoError(f"{where}: unexpected section header table")
    try:
        headers = [
            _SECTION_HEADER.unpack_from(data, shoff + index * shentsize) for index in range(shnum)
        ]
    except struct.error as err:
        raise ModinfoError(f"{where}: section headers run past the end of the file") from err
    names = _contents(data, headers[shstrndx])
    sections = {}
    for header in headers:
        if header[1] == _SHT_NOBITS:
            continue
        start = header[0]
        end = names.find(b"\0", start)
        sections[names[start:end].decode("utf-8", "replace")] = _contents(data, header)
    return sections


def _contents(data: bytes, header: tuple[int, ...]) -> bytes:
    return data[header[4] : header[4] + header[5]]


def module_info(path: Path) -> ModuleInfo:
    """The .modinfo fields and compiler strings of the module at `path`."""
    sections = elf_sections(path.read_bytes(), str(path))
    if ".modinfo" not in sections:
        raise ModinfoError(f"{path}: no .modinfo section: not a kernel module")
    fields: dict[str, list[str]] = {}
    for entry in _strings(sections[".modinfo"]):
        key, sep, value = entry.partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    return ModuleInfo(
        fields={key: tuple(values) for key, values in fields.items()},
        compilers=tuple(dict.fromkeys(_strings(sections.get(".comment", b"")))),
    )


def _strings(section: bytes) -> list[str]:
    return [s.decode("utf-8", "replace") for s in section.split(b"\0") if s]
