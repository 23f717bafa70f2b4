# SPDX-License-Identifier: MIT
"""DMA buffers, region access by pread/pwrite/mmap, and eventfds, on real kernel objects."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

import pytest

from harness.uapi import DmaBuffer, EventFd, Region, RegionInfo
from harness.uapi.fdobject import FdObject


def test_dma_buffer_is_page_aligned_and_its_vaddr_is_the_memory() -> None:
    with DmaBuffer(5000) as buffer:
        assert buffer.size == 2 * mmap.PAGESIZE
        assert buffer.vaddr % mmap.PAGESIZE == 0
        buffer.write(4090, b"crosses a page")
        assert ctypes.string_at(buffer.vaddr + 4090, 14) == b"crosses a page"
        buffer.fill(b"\xa5\x5a", 0, 6)
        assert buffer.read(0, 6) == b"\xa5\x5a" * 3
        with pytest.raises(IndexError):
            buffer.write(buffer.size - 1, b"xx")
        with pytest.raises(ValueError):
            DmaBuffer(0)
    with pytest.raises(ValueError, match="closed"):
        buffer.read()


def _file_region(tmp_path: Path, index: int, offset: int, size: int) -> Region:
    path = tmp_path / "device"
    path.write_bytes(bytes(offset + size))
    device = FdObject(os.open(path, os.O_RDWR))
    return Region(device, RegionInfo(index, 0, size, offset, (), None, None))


def test_region_accesses_are_relative_to_the_region_offset(tmp_path: Path) -> None:
    region = _file_region(tmp_path, 2, 2 * mmap.PAGESIZE, mmap.PAGESIZE)
    region.write_int(0x10, 4, 0x11223344)
    region.write_int(0x14, 2, -1)
    assert region.read(0x10, 6) == bytes.fromhex("44332211ffff")
    assert region.read_int(0x10, 8) == 0x0000FFFF11223344
    raw = (tmp_path / "device").read_bytes()
    assert raw[2 * mmap.PAGESIZE + 0x10 : 2 * mmap.PAGESIZE + 0x14] == bytes.fromhex("44332211")
    with pytest.raises(ValueError, match="width"):
        region.read_int(0, 3)


def test_region_mmap_is_coherent_with_pread(tmp_path: Path) -> None:
    region = _file_region(tmp_path, 0, mmap.PAGESIZE, mmap.PAGESIZE)
    view = region.mmap()
    view[8:12] = b"mmap"
    view.flush()
    assert region.read(8, 4) == b"mmap"
    view.close()


def test_eventfd_counts_signals_and_times_out_empty() -> None:
    with EventFd() as event:
        assert event.wait(0.01) == 0
        os.eventfd_write(event.fd, 3)
        assert event.wait(1.0) == 3
        assert event.consume() == 0
