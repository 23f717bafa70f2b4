# SPDX-License-Identifier: MIT
"""The device's DMA into user memory (reference device): through pinned pages and through
vfio_dma_rw, kept pins released by unmap (.dma_unmap), dirty bitmaps, and DMA errors."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from harness.refdev import Direction, Method, RefDevice
from harness.refdev import contract as c
from harness.refdev import registers as r
from harness.refdev.device import dma_command
from harness.uapi import PAGE_SIZE, DmaBuffer, IommuMode, OpenDevice
from tests.uapi import util
from tests.uapi.util import IOVA

pytestmark = pytest.mark.refdev

BUFFER = 64 * PAGE_SIZE
START = PAGE_SIZE - 0x10  # misaligned, so copies cross page boundaries
LENGTH = 3 * PAGE_SIZE + 123
DST = 32 * PAGE_SIZE  # second half of the buffer
# What the IOMMU backends answer for an IOVA nobody mapped.
UNMAPPED_ERRNO = {IommuMode.TYPE1: errno.EINVAL, IommuMode.IOMMUFD: errno.ENOENT}


def pages_spanned(start: int, length: int) -> int:
    return (start + length - 1) // PAGE_SIZE - start // PAGE_SIZE + 1


@pytest.fixture
def mapped(opened: OpenDevice) -> Iterator[DmaBuffer]:
    with DmaBuffer(BUFFER) as buffer:
        opened.dma.map_buffer(IOVA, buffer)
        yield buffer


METHODS = [pytest.param(Method.PIN, id="pin"), pytest.param(Method.RW, id="dma_rw")]


@pytest.mark.parametrize("method", METHODS)
def test_dma_to_device(ref: RefDevice, mapped: DmaBuffer, method: Method) -> None:
    data = os.urandom(LENGTH)
    mapped.write(START, data)
    before = ref.counters()
    ref.dma(IOVA + START, 0x1230, LENGTH, Direction.TO_DEVICE, method).check()
    assert ref.mem_read(0x1230, LENGTH) == data
    delta = ref.counters().minus(before)
    pins = pages_spanned(START, LENGTH) if method is Method.PIN else 0
    assert (delta.dma_done, delta.pinned_pages) == (1, 0)
    assert (delta.total_pins, delta.total_unpins) == (pins, pins)


@pytest.mark.parametrize("method", METHODS)
def test_dma_from_device(ref: RefDevice, mapped: DmaBuffer, method: Method) -> None:
    data = os.urandom(LENGTH)
    ref.mem_write(0x8010, data)
    ref.dma(0x8010, IOVA + DST + START, LENGTH, Direction.FROM_DEVICE, method).check()
    assert mapped.read(DST + START, LENGTH) == data
    assert mapped.read(DST, START) == bytes(START), "bytes before the copy changed"


@pytest.mark.parametrize("method", METHODS)
def test_dma_guest_to_guest(ref: RefDevice, mapped: DmaBuffer, method: Method) -> None:
    data = os.urandom(LENGTH)
    mapped.write(START, data)
    ref.dma(IOVA + START, IOVA + DST + START, LENGTH, Direction.GUEST_TO_GUEST, method).check()
    assert mapped.read(DST + START, LENGTH) == data


@pytest.mark.parametrize("method", METHODS)
def test_dma_maximum_length(ref: RefDevice, opened: OpenDevice, method: Method) -> None:
    size = min(c.DMA_MAX_LEN, ref.mem.info.size)
    with DmaBuffer(size) as buffer:
        opened.dma.map_buffer(IOVA, buffer)
        data = os.urandom(size)
        buffer.write(0, data)
        ref.dma(IOVA, 0, size, Direction.TO_DEVICE, method).check()
        assert ref.mem_read(0, size) == data


@pytest.mark.parametrize("method", METHODS)
def test_dma_to_unmapped_iova(
    ref: RefDevice, mapped: DmaBuffer, iommu_mode: IommuMode, method: Method
) -> None:
    result = ref.dma(IOVA + BUFFER, 0, PAGE_SIZE, Direction.TO_DEVICE, method)
    assert result.failed and result.error == UNMAPPED_ERRNO[iommu_mode], result
    assert ref.counters().pinned_pages == 0


@pytest.mark.parametrize("method", METHODS)
def test_dma_write_to_read_only_mapping(ref: RefDevice, opened: OpenDevice, method: Method) -> None:
    with DmaBuffer(PAGE_SIZE) as buffer:
        opened.dma.map_buffer(IOVA, buffer, writable=False)
        result = ref.dma(0, IOVA, 64, Direction.FROM_DEVICE, method)
        assert result.failed and result.error == errno.EPERM, result
        assert buffer.read(0, 64) == bytes(64)


@pytest.mark.parametrize(
    ("what", "length", "command"),
    [
        ("length_zero", 0, dma_command(Direction.TO_DEVICE)),
        ("length_too_big", c.DMA_MAX_LEN + 1, dma_command(Direction.TO_DEVICE)),
        ("direction_3", 64, 3),
        ("unknown_bits", 64, dma_command(Direction.TO_DEVICE) | 0x100),
        ("keep_pinned_with_dma_rw", 64, dma_command(Direction.TO_DEVICE, Method.RW, True)),
    ],
)
def test_dma_bad_command(
    ref: RefDevice, mapped: DmaBuffer, what: str, length: int, command: int
) -> None:
    ref.write64(r.REG_DMA_SRC, IOVA)
    ref.write64(r.REG_DMA_DST, 0)
    ref.write32(r.REG_DMA_LEN, length)
    done = ref.read32(r.REG_DMA_DONE_COUNT)
    ref.write32(r.REG_DMA_CMD, command)
    assert ref.read32(r.REG_DMA_STATUS) == r.DMA_STATUS_ERROR
    assert ref.read32(r.REG_DMA_ERROR) == errno.EINVAL
    assert ref.read32(r.REG_DMA_DONE_COUNT) == done


def test_dma_past_device_memory(ref: RefDevice, mapped: DmaBuffer) -> None:
    result = ref.dma(IOVA, ref.mem.info.size - 16, 64, Direction.TO_DEVICE, Method.RW)
    assert result.failed and result.error == errno.EINVAL, result


def test_dma_status_cleared_by_next_command(ref: RefDevice, mapped: DmaBuffer) -> None:
    assert ref.dma(IOVA, 0, 0, Direction.TO_DEVICE).failed
    result = ref.dma(IOVA, 0, 64, Direction.TO_DEVICE)
    assert (result.status, result.error) == (r.DMA_STATUS_DONE, 0)


# -- kept pins and .dma_unmap -----------------------------------------------------------------


def test_unmap_releases_kept_pins(ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer) -> None:
    data = os.urandom(LENGTH)
    mapped.write(START, data)
    pages = pages_spanned(START, LENGTH)
    before = ref.counters()
    ref.dma(IOVA + START, 0x4000, LENGTH, Direction.TO_DEVICE, Method.PIN, keep_pinned=True).check()
    assert ref.mem_read(0x4000, LENGTH) == data
    kept = ref.counters()
    assert kept.pinned_pages == pages
    assert kept.minus(before).total_pins == pages
    assert opened.dma.unmap(IOVA, BUFFER) == BUFFER
    after = ref.counters()
    assert after.pinned_pages == 0
    assert after.minus(kept).dma_unmap_calls == 1
    assert after.total_pins == after.total_unpins


def test_unmap_elsewhere_keeps_pins(ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer) -> None:
    with DmaBuffer(PAGE_SIZE) as other:
        opened.dma.map_buffer(IOVA + BUFFER, other)
        ref.dma(IOVA, 0, PAGE_SIZE, Direction.TO_DEVICE, Method.PIN, keep_pinned=True).check()
        opened.dma.unmap(IOVA + BUFFER, PAGE_SIZE)
        assert ref.counters().pinned_pages == 1
        opened.dma.unmap(IOVA, BUFFER)
        assert ref.counters().pinned_pages == 0


def test_unmap_all_releases_kept_pins(ref: RefDevice, opened: OpenDevice) -> None:
    with DmaBuffer(4 * PAGE_SIZE) as a, DmaBuffer(4 * PAGE_SIZE) as b:
        opened.dma.map_buffer(IOVA, a)
        opened.dma.map_buffer(IOVA + 0x100000, b)
        for iova in (IOVA, IOVA + 0x100000):
            ref.dma(iova, 0, 4 * PAGE_SIZE, Direction.TO_DEVICE, keep_pinned=True).check()
        assert ref.counters().pinned_pages == 8
        opened.dma.unmap_all()
        counters = ref.counters()
        assert counters.pinned_pages == 0 and counters.total_pins == counters.total_unpins


def test_kept_pin_limit(ref: RefDevice, opened: OpenDevice) -> None:
    chunk = min(c.DMA_MAX_LEN, ref.mem.info.size)
    rounds = c.MAX_KEPT_PAGES * PAGE_SIZE // chunk
    with DmaBuffer(chunk) as buffer:
        opened.dma.map_buffer(IOVA, buffer)
        for _ in range(rounds):
            ref.dma(IOVA, 0, chunk, Direction.TO_DEVICE, keep_pinned=True).check()
        assert ref.counters().pinned_pages == c.MAX_KEPT_PAGES
        result = ref.dma(IOVA, 0, PAGE_SIZE, Direction.TO_DEVICE, keep_pinned=True)
        assert result.failed and result.error == errno.ENOSPC, result
        opened.dma.unmap(IOVA, chunk)
        counters = ref.counters()
        assert counters.pinned_pages == 0 and counters.total_pins == counters.total_unpins


# -- dirty tracking (type1) -------------------------------------------------------------------


def dirty_pages(bitmap: bytes) -> set[int]:
    return {n for n in range(len(bitmap) * 8) if bitmap[n // 8] >> (n % 8) & 1}


def written_pages(offset: int, length: int) -> set[int]:
    first = offset // PAGE_SIZE
    return set(range(first, first + pages_spanned(offset, length)))


def test_dirty_bitmap_shows_device_writes(
    ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer
) -> None:
    container = util.type1(opened).container
    container.dirty_pages_start()
    try:
        container.dirty_pages_bitmap(IOVA, BUFFER, PAGE_SIZE)  # everything mapped starts dirty
        assert dirty_pages(container.dirty_pages_bitmap(IOVA, BUFFER, PAGE_SIZE)) == set()
        ref.mem_write(0x9000, os.urandom(LENGTH))
        ref.dma(0x9000, IOVA + START, LENGTH, Direction.FROM_DEVICE, Method.PIN).check()
        ref.dma(0x9000, IOVA + DST + START, LENGTH, Direction.FROM_DEVICE, Method.RW).check()
        dirty = dirty_pages(container.dirty_pages_bitmap(IOVA, BUFFER, PAGE_SIZE))
    finally:
        container.dirty_pages_stop()
    expected = written_pages(START, LENGTH) | written_pages(DST + START, LENGTH)
    assert expected <= dirty, f"pages written but not dirty: {sorted(expected - dirty)}"
    assert BUFFER // PAGE_SIZE - 1 not in dirty, "an untouched page is dirty"


def test_unmap_with_dirty_bitmap(ref: RefDevice, opened: OpenDevice, mapped: DmaBuffer) -> None:
    container = util.type1(opened).container
    container.dirty_pages_start()
    try:
        container.dirty_pages_bitmap(IOVA, BUFFER, PAGE_SIZE)
        ref.dma(0, IOVA + DST, 2 * PAGE_SIZE, Direction.FROM_DEVICE, Method.RW).check()
        size, bitmap = container.unmap_dma_dirty(IOVA, BUFFER, PAGE_SIZE)
    finally:
        container.dirty_pages_stop()
    assert size == BUFFER
    dirty = dirty_pages(bitmap)
    assert written_pages(DST, 2 * PAGE_SIZE) <= dirty
    assert 0 not in dirty
