# SPDX-License-Identifier: MIT
"""Step 4: the device's DMA engine, programmed by the guest with guest-physical addresses
(no vIOMMU: IOVA = GPA), pins the pages QEMU DMA-mapped and copies both ways, with both
methods (pinning, vfio_dma_rw); pages it keeps pinned are released when QEMU unmaps them.
"""

from __future__ import annotations

from harness.core.checks import PAGE, equal, expect, first_difference, pages_spanned, pattern
from harness.nested import pci
from harness.nested.scenario import Scenario, dma_ok
from harness.nested.trace import covered, mapped_ranges
from harness.refdev import registers as r

IVSHMEM_VENDOR, IVSHMEM_DEVICE = 0x1AF4, 0x1110
IVSHMEM_MEMORY_BAR = 2  # ivshmem-plain: BAR0 registers, BAR2 the shared memory


def _copy_check(s: Scenario, method: int, seed: int) -> None:
    name = "vfio_dma_rw" if method else "pin"
    length = s.dma_length
    pages = pages_spanned(s.area(0), length)
    expected_pins = 0 if method else pages
    # guest -> device: a pattern in guest RAM, copied into the mmap-able half of BAR2.
    data = pattern(length, seed)
    src, dst_offset = s.area(seed % 4), 0x100 + seed * 0x40
    s.machine.mem_write(src, data)
    before = s.r.counters()
    dma_ok(s.r, src, dst_offset, length, r.DMA_TO_DEVICE | method, f"guest->device ({name})")
    after = s.r.counters()
    got = s.machine.mem_read(s.bar2 + dst_offset, length)
    expect(
        got == data,
        f"guest->device ({name}): BAR2 holds other bytes: {first_difference(got, data)}",
    )
    _pins_released(before, after, expected_pins, f"guest->device ({name})")
    equal(
        after["TOTAL_UNPINS"] - before["TOTAL_UNPINS"],
        expected_pins,
        f"pages unpinned after guest->device ({name})",
    )
    equal(after["DMA_DONE_COUNT"] - before["DMA_DONE_COUNT"], 1, "DMA_DONE_COUNT increase")

    # device -> guest: what was just written through BAR2's mmap, back into another buffer.
    dst = s.area(seed % 4 + 4)
    s.machine.mem_write(dst, bytes(length))
    before = s.r.counters()
    dma_ok(s.r, dst_offset, dst, length, r.DMA_FROM_DEVICE | method, f"device->guest ({name})")
    after = s.r.counters()
    back = s.machine.mem_read(dst, length)
    expect(
        back == data,
        f"device->guest ({name}): guest RAM holds other bytes: {first_difference(back, data)}",
    )
    _pins_released(before, after, expected_pins, f"device->guest ({name})")


def _pins_released(before: dict[str, int], after: dict[str, int], pins: int, what: str) -> None:
    """`pins` pages were pinned for the copy `what`, and none is pinned any longer."""
    equal(after["TOTAL_PINS"] - before["TOTAL_PINS"], pins, f"pages pinned for {what}")
    equal(after["PINNED_PAGES"], 0, f"PINNED_PAGES after {what}")


def check_dma_pin(s: Scenario) -> None:
    _copy_check(s, 0, 1)


def check_dma_rw(s: Scenario) -> None:
    _copy_check(s, r.DMA_METHOD_RW, 2)


def check_mmap_writes_reach_device(s: Scenario) -> None:
    """Bytes written through the mmap-ed half are the device's memory: its DMA engine copies
    them out (a second view of step 3's direct access)."""
    data = pattern(64, 9)
    offset = 0x3000
    s.machine.mem_write(s.bar2 + offset, data)
    dst = s.area(8)
    s.machine.mem_write(dst, bytes(64))
    dma_ok(
        s.r,
        offset,
        dst,
        64,
        r.DMA_FROM_DEVICE | r.DMA_METHOD_RW,
        "device->guest of mmap-written bytes",
    )
    back = s.machine.mem_read(dst, 64)
    expect(
        back == data,
        "bytes written through BAR2's mmap did not reach device memory: "
        + first_difference(back, data),
    )


def check_unmap_unpins(s: Scenario) -> None:
    """Keep pages of a RAM BAR pinned, then turn the BAR's decoding off: QEMU's VFIO listener
    unmaps it (VFIO_IOMMU_UNMAP_DMA), type1 calls the driver's .dma_unmap, which unpins."""
    found = s.machine.probe(IVSHMEM_VENDOR, IVSHMEM_DEVICE)
    expect(found is not None, "no ivshmem-plain device (the RAM region to unmap) on the bus")
    assert found is not None
    s.ivshmem = found
    bdf, ram = found.bdf, found.bar(IVSHMEM_MEMORY_BAR)
    command = s.machine.config_read(bdf, pci.COMMAND, 2)
    s.machine.config_write(bdf, pci.COMMAND, 2, command | pci.COMMAND_MEMORY)
    length = s.dma_length
    iova = ram.address + PAGE - 16  # crosses a page boundary
    pages = pages_spanned(iova, length)
    expect(
        covered(mapped_ranges(s.qemu.trace()), iova, length),
        f"QEMU did not DMA-map the ivshmem BAR at {ram.address:#x} when its decoding was turned on",
    )
    data = pattern(length, 5)
    s.machine.mem_write(iova, data)
    before = s.r.counters()
    dma_ok(
        s.r, iova, 0x8000, length, r.DMA_TO_DEVICE | r.DMA_KEEP_PINNED, "keep-pinned guest->device"
    )
    kept = s.r.counters()
    equal(
        kept["PINNED_PAGES"],
        before["PINNED_PAGES"] + pages,
        "PINNED_PAGES with the copy's pages kept",
    )
    s.machine.config_write(bdf, pci.COMMAND, 2, command & ~pci.COMMAND_MEMORY)
    after = s.r.counters()
    expect(
        not covered(mapped_ranges(s.qemu.trace()), iova, length),
        "QEMU did not unmap the ivshmem BAR when its decoding was turned off",
    )
    equal(
        after["PINNED_PAGES"],
        before["PINNED_PAGES"],
        "PINNED_PAGES after QEMU unmapped the pinned range",
    )
    equal(
        after["DMA_UNMAP_CALLS"] - kept["DMA_UNMAP_CALLS"],
        1,
        "DMA_UNMAP_CALLS increase (.dma_unmap unpinned)",
    )
    equal(after["TOTAL_UNPINS"] - kept["TOTAL_UNPINS"], pages, "pages unpinned by the unmap")
