# SPDX-License-Identifier: MIT
"""VFIO_DEVICE_RESET: accepted where the device says it resets, refused where it does not; on
the reference device it restores register defaults, drops pending interrupts and kept pins, and
keeps what it must."""

from __future__ import annotations

import errno

import pytest

from harness.refdev import Direction, Method, RefDevice
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.uapi import PAGE_SIZE, DmaBuffer, EventFd, OpenDevice
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.util import IOVA, raises_errno


def test_reset(opened: OpenDevice) -> None:
    info = opened.device.info()
    util.require("reset", info.supports_reset, "the device does not report FLAGS_RESET")
    opened.device.reset()
    opened.device.reset()
    assert opened.device.info().num_regions == info.num_regions


def test_reset_with_argument_ignored(opened: OpenDevice) -> None:
    info = opened.device.info()
    util.require("reset", info.supports_reset, "the device does not report FLAGS_RESET")
    opened.device.ioctl(v.VFIO_DEVICE_RESET, "VFIO_DEVICE_RESET", 0xDEAD)


def test_reset_refused_when_not_offered(opened: OpenDevice) -> None:
    """Without VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_RESET must fail (vfio-pci: EINVAL), not
    claim a reset the device says it cannot do."""
    if opened.device.info().supports_reset:
        pytest.skip("the device offers reset (test_reset covers it)")
    with raises_errno(errno.EINVAL, errno.ENOTTY):
        opened.device.reset()


@pytest.mark.refdev
def test_reset_restores_registers(ref: RefDevice) -> None:
    ref.write32(r.REG_SCRATCH0, 0x12345678)
    ref.write32(r.REG_IRQ_MASK, r.IRQ_ALL)
    ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
    ref.write64(r.REG_DMA_SRC, 0x1000)
    before = ref.counters()
    ref.device.reset()
    for offset in (r.REG_SCRATCH0, r.REG_IRQ_MASK, r.REG_IRQ_STATUS, r.REG_DMA_STATUS):
        assert ref.read32(offset) == 0, f"register {offset:#x} after reset"
    assert ref.read64(r.REG_DMA_SRC) == 0
    assert ref.read32(r.REG_ID) == r.ID_VALUE
    assert ref.counters().minus(before).reset_count == 1


@pytest.mark.refdev
def test_reset_keeps_config_memory_and_eventfds(ref: RefDevice, opened: OpenDevice) -> None:
    ref.config.write_int(pci.INTERRUPT_LINE, 1, 0x21)
    ref.mem_write(0x100, b"survives reset")
    with EventFd() as eventfd:
        intx = opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX)
        intx.attach_eventfds([eventfd.fd])
        ref.device.reset()
        assert ref.config.read_int(pci.INTERRUPT_LINE, 1) == 0x21
        assert ref.mem_read(0x100, 14) == b"survives reset"
        ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert eventfd.wait(2.0) == 1, "the INTx eventfd was lost by reset"


@pytest.mark.refdev
def test_reset_unmasks_pending_intx(ref: RefDevice, opened: OpenDevice) -> None:
    with EventFd() as eventfd:
        opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([eventfd.fd])
        ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert eventfd.wait(2.0) == 1  # now auto-masked
        ref.device.reset()
        ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert eventfd.wait(2.0) == 1, "INTx stayed masked across reset"


@pytest.mark.refdev
def test_reset_unpins(ref: RefDevice, opened: OpenDevice) -> None:
    with DmaBuffer(8 * PAGE_SIZE) as buffer:
        opened.dma.map_buffer(IOVA, buffer)
        ref.dma(IOVA, 0, 8 * PAGE_SIZE, Direction.TO_DEVICE, Method.PIN, keep_pinned=True).check()
        assert ref.counters().pinned_pages == 8
        ref.device.reset()
        counters = ref.counters()
        assert counters.pinned_pages == 0
        assert counters.total_pins == counters.total_unpins == 8
        assert opened.dma.unmap(IOVA, 8 * PAGE_SIZE) == 8 * PAGE_SIZE
        assert ref.counters().dma_unmap_calls == 0, "unmap found pins that reset dropped"
