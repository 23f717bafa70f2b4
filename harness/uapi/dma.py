# SPDX-License-Identifier: MIT
"""Page-aligned user memory to hand to a device for DMA."""

from __future__ import annotations

import ctypes
import mmap

from harness.core.closing import Closing

PAGE_SIZE = mmap.PAGESIZE


def page_align_up(value: int, page_size: int = PAGE_SIZE) -> int:
    return (value + page_size - 1) & ~(page_size - 1)


class DmaBuffer(Closing):
    """Anonymous, page-aligned, zero-filled memory with a stable virtual address.

    `vaddr` is what MAP_DMA / IOAS_MAP take. The memory stays mapped until close(), so the
    address never dangles while a mapping in the IOMMU may still point at it.
    """

    def __init__(self, size: int, *, populate: bool = True) -> None:
        if size <= 0:
            raise ValueError(f"DMA buffer size must be positive, not {size}")
        self.size = page_align_up(size)
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        if populate:
            flags |= mmap.MAP_POPULATE
        self._map: mmap.mmap | None = mmap.mmap(
            -1, self.size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE
        )
        anchor = ctypes.c_char.from_buffer(self._map)
        self.vaddr = ctypes.addressof(anchor)
        del anchor  # a live export would make mmap.close() fail

    @property
    def memory(self) -> mmap.mmap:
        if self._map is None:
            raise ValueError("DMA buffer is closed")
        return self._map

    def __len__(self) -> int:
        return self.size

    def read(self, offset: int = 0, length: int | None = None) -> bytes:
        end = self.size if length is None else offset + length
        self._check_range(offset, end)
        return self.memory[offset:end]

    def write(self, offset: int, data: bytes) -> None:
        self._check_range(offset, offset + len(data))
        self.memory[offset : offset + len(data)] = data

    def fill(self, pattern: bytes, offset: int = 0, length: int | None = None) -> None:
        """Repeat `pattern` over [offset, offset+length)."""
        end = self.size if length is None else offset + length
        self._check_range(offset, end)
        span = end - offset
        repeated = (pattern * (span // len(pattern) + 1))[:span]
        self.memory[offset:end] = repeated

    def _check_range(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.size:
            raise IndexError(f"[{start:#x}, {end:#x}) is outside the {self.size:#x}-byte buffer")

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
