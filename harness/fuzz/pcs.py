# SPDX-License-Identifier: MIT
"""KCOV's program counters made comparable across boots: KASLR moves the kernel's text and
every module loads at an address of its own, so a PC becomes its offset into the kernel's text
or into its module, tagged with the module's name. KCOV itself takes KASLR's offset off every
PC it records (kernel/kcov.c's canonicalize_ip), modules' too, so it is added back first: on
x86_64 the offset is where _text is now against where the kernel was linked.

    pcs = PcMap.read()                      # /proc/kallsyms' _stext and /proc/modules, as root
    stable = pcs.normalise(0xffffffffc0a01234)  # the same number on every boot

Standard library only: this runs in guests.
"""

from __future__ import annotations

import bisect
import platform
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

KERNEL_TAG = 0
TAG_SHIFT = 40  # a module's offset stays below 1 TiB
# x86_64's __START_KERNEL_map + LOAD_PHYSICAL_ADDR (the default CONFIG_PHYSICAL_START).
X86_64_LINKED_TEXT = 0xFFFFFFFF81000000


def module_tag(name: str) -> int:
    """A module's number in a normalised PC (1..65535, stable across boots)."""
    return zlib.crc32(name.encode()) % 0xFFFF + 1


@dataclass(frozen=True)
class PcMap:
    text_start: int
    starts: tuple[int, ...]  # the modules' load addresses, sorted
    modules: tuple[tuple[int, int, str], ...]  # (start, size, name), in that order
    kaslr_offset: int = 0

    @classmethod
    def parse(
        cls, kallsyms: Iterable[str], modules: Iterable[str], linked_text: int | None = None
    ) -> PcMap:
        """From /proc/kallsyms ("addr type name") and /proc/modules ("name size ... 0xaddr");
        `linked_text`: _text's link-time address (None: no KASLR to undo)."""
        text_start = text = 0
        for line in kallsyms:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == "_text":
                text = int(fields[0], 16)
            if len(fields) >= 3 and fields[2] == "_stext":
                text_start = int(fields[0], 16)
            if text and text_start:
                break
        text_start = text_start or text
        loaded = []
        for line in modules:
            fields = line.split()
            if len(fields) >= 6 and fields[5].startswith("0x"):
                loaded.append((int(fields[5], 16), int(fields[1]), fields[0]))
        loaded.sort()
        offset = text - linked_text if linked_text is not None and text else 0
        return cls(text_start, tuple(start for start, _, _ in loaded), tuple(loaded), offset)

    @classmethod
    def read(cls) -> PcMap:
        linked = X86_64_LINKED_TEXT if platform.machine() == "x86_64" else None
        with (
            open("/proc/kallsyms", encoding="ascii", errors="replace") as kallsyms,
            open("/proc/modules", encoding="ascii", errors="replace") as modules,
        ):
            return cls.parse(kallsyms, modules.readlines(), linked)

    def normalise(self, kcov_pc: int) -> int:
        """A PC as KCOV recorded it, as a number that is the same on every boot."""
        pc = kcov_pc + self.kaslr_offset
        where = bisect.bisect_right(self.starts, pc) - 1
        if where >= 0:
            start, size, name = self.modules[where]
            if pc < start + size:
                return module_tag(name) << TAG_SHIFT | (pc - start)
        return KERNEL_TAG << TAG_SHIFT | (pc - self.text_start) & ((1 << TAG_SHIFT) - 1)

    def describe(self, stable: int) -> str:
        """'vfio_harness_mdev+0x1a2' or 'kernel+0x...' for a normalised PC."""
        tag, offset = stable >> TAG_SHIFT, stable & ((1 << TAG_SHIFT) - 1)
        if tag == KERNEL_TAG:
            return f"kernel+{offset:#x}"
        names = [name for _, _, name in self.modules if module_tag(name) == tag]
        return f"{names[0] if names else f'module#{tag}'}+{offset:#x}"


__all__ = ["PcMap", "module_tag"]
