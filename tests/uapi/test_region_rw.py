# SPDX-License-Identifier: MIT
"""PCI config space semantics (read-only fields, BAR sizing) and our device's registers and
memory through the device fd (every region's edges are test_regions.py's)."""

from __future__ import annotations

import os

import pytest

from harness.refdev import RefDevice
from harness.refdev import contract as c
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.uapi import OpenDevice, Region
from harness.uapi.raw import vfio as v
from tests.uapi import util

WIDTHS = [1, 2, 4, 8]
PCI_COMMAND_IO = 0x1
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_COMMAND_INTX_DISABLE = 0x400
MSI_FLAGS = 0x02  # offset of the message control word in the MSI capability
MSI_FLAGS_ENABLE = 0x1
MSI_FLAGS_64BIT = 0x80


def pci_config(opened: OpenDevice) -> Region:
    if not opened.device.info().is_pci:
        pytest.skip("not a vfio-pci device: no PCI config space")
    return opened.device.region(util.CONFIG)


# -- any PCI device: config space ------------------------------------------------------------


def test_pci_config_identity(opened: OpenDevice) -> None:
    config = pci_config(opened)
    assert config.read_int(pci.VENDOR_ID, 2) not in (0x0000, 0xFFFF)
    assert config.read_int(pci.COMMAND, 2) & PCI_COMMAND_MASTER == 0, "bus master set at open"


def test_pci_config_vendor_id_read_only(opened: OpenDevice) -> None:
    config = pci_config(opened)
    identity = config.read_int(pci.VENDOR_ID, 4)
    config.write_int(pci.VENDOR_ID, 4, ~identity)
    assert config.read_int(pci.VENDOR_ID, 4) == identity


def _bar_size(config: Region, offset: int) -> tuple[int, bool]:
    """(size, 64-bit) as sizing the BAR reports; IO BARs too."""
    probe = pci.probe_memory_bar(config, offset)
    if probe.mask & pci.BAR_SPACE_IO:
        address = probe.mask & ~0x3 & 0xFFFF
        return ((~address & 0xFFFF) + 1 if address else 0), False
    return probe.size, probe.is_64bit


def test_pci_bar_sizing_matches_regions(opened: OpenDevice) -> None:
    config = pci_config(opened)
    index = v.VFIO_PCI_BAR0_REGION_INDEX
    while index <= v.VFIO_PCI_BAR5_REGION_INDEX:
        info = opened.device.region_info(index)
        size, is_64 = _bar_size(config, pci.BAR0 + 4 * index)
        expected = 1 << (info.size - 1).bit_length() if info.size else 0
        assert size == expected, f"BAR{index}: sizing says {size:#x}, region is {info.size:#x}"
        index += 2 if is_64 else 1


# -- the reference device: register and memory semantics --------------------------------------


@pytest.mark.refdev
@pytest.mark.parametrize("width", WIDTHS)
def test_bar0_scratch_widths(ref: RefDevice, width: int) -> None:
    value = int.from_bytes(os.urandom(width), "little")
    ref.bar0.write_int(r.REG_SCRATCH0, width, value)
    assert ref.bar0.read_int(r.REG_SCRATCH0, width) == value
    assert ref.bar0.read_exact(r.REG_SCRATCH0, width) == value.to_bytes(width, "little")


@pytest.mark.refdev
@pytest.mark.parametrize("width", [2, 4, 8])
def test_bar0_unaligned(ref: RefDevice, width: int) -> None:
    ref.bar0.write_exact(r.REG_SCRATCH0, bytes(16))
    data = os.urandom(width)
    ref.bar0.write_exact(r.REG_SCRATCH0 + 3, data)
    whole = ref.bar0.read_exact(r.REG_SCRATCH0, 16)
    assert whole == bytes(3) + data + bytes(13 - width)
    assert ref.bar0.read_exact(r.REG_SCRATCH0 + 3, width) == data


@pytest.mark.refdev
def test_bar0_read_only_registers(ref: RefDevice) -> None:
    for offset, value in ((r.REG_ID, r.ID_VALUE), (r.REG_VERSION, r.VERSION_VALUE)):
        ref.write32(offset, ~value & 0xFFFFFFFF)
        assert ref.read32(offset) == value


@pytest.mark.refdev
def test_bar0_write_only_reads_zero(ref: RefDevice) -> None:
    ref.write32(r.REG_IRQ_RAISE, 0)
    assert ref.read32(r.REG_IRQ_RAISE) == 0


@pytest.mark.refdev
@pytest.mark.parametrize("width", WIDTHS)
def test_bar2_edges(ref: RefDevice, width: int) -> None:
    size = ref.mem.info.size
    for offset in (0, size - width):
        data = os.urandom(width)
        ref.mem.write_exact(offset, data)
        assert ref.mem.read_exact(offset, width) == data


@pytest.mark.refdev
def test_bar2_large_transfer(ref: RefDevice) -> None:
    data = os.urandom(ref.mem.info.size)  # the whole region, in one pwrite
    ref.mem.write_exact(0, data)
    assert ref.mem.read_exact(0, len(data)) == data


@pytest.mark.refdev
def test_config_read_only_fields(ref: RefDevice) -> None:
    config = ref.config
    fixed = [pci.VENDOR_ID, pci.DEVICE_ID, pci.STATUS, pci.CLASS_REVISION, pci.SUBSYSTEM_VENDOR_ID]
    before = {
        offset: config.read_int(offset, 4 if offset == pci.CLASS_REVISION else 2)
        for offset in fixed
    }
    for offset, value in before.items():
        width = 4 if offset == pci.CLASS_REVISION else 2
        config.write_int(offset, width, ~value)
        assert config.read_int(offset, width) == value, f"config {offset:#x} changed"
    for offset in (pci.CAPABILITY_LIST, pci.INTERRUPT_PIN):
        value = config.read_int(offset, 1)
        config.write_int(offset, 1, ~value)
        assert config.read_int(offset, 1) == value, f"config {offset:#x} changed"


@pytest.mark.refdev
def test_config_command_register(ref: RefDevice) -> None:
    writable = PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE
    ref.config.write_int(pci.COMMAND, 2, 0xFFFF)
    assert ref.config.read_int(pci.COMMAND, 2) == writable
    ref.config.write_int(pci.COMMAND, 2, 0)
    assert ref.config.read_int(pci.COMMAND, 2) == 0


@pytest.mark.refdev
def test_config_interrupt_line_writable(ref: RefDevice) -> None:
    ref.config.write_int(pci.INTERRUPT_LINE, 1, 0x5A)
    assert ref.config.read_int(pci.INTERRUPT_LINE, 1) == 0x5A


@pytest.mark.refdev
def test_config_msi_capability(ref: RefDevice) -> None:
    cap = r.PCI_MSI_CAP_OFFSET
    assert ref.config.read_int(cap, 1) == 0x05  # PCI_CAP_ID_MSI
    assert ref.config.read_int(cap + 1, 1) == 0  # last in the list
    control = ref.config.read_int(cap + MSI_FLAGS, 2)
    assert control & MSI_FLAGS_64BIT and not control & MSI_FLAGS_ENABLE


@pytest.mark.refdev
def test_config_unimplemented_bytes(ref: RefDevice) -> None:
    ref.config.write_int(0x80, 4, 0xFFFFFFFF)
    assert ref.config.read_exact(0x80, 0x80) == bytes(0x80)


@pytest.mark.refdev
@pytest.mark.parametrize("width", [1, 2, 4])
def test_config_unaligned_reads(ref: RefDevice, width: int) -> None:
    whole = ref.config.read_exact(0, c.CONFIG_SIZE)
    for offset in (1, 3, 0x3D, c.CONFIG_SIZE - width):
        assert ref.config.read_exact(offset, width) == whole[offset : offset + width]


@pytest.mark.refdev
def test_config_bar_sizing(ref: RefDevice) -> None:
    bar0 = pci.probe_memory_bar(ref.config, pci.BAR0)
    assert (bar0.bits, bar0.prefetchable, bar0.size) == (32, False, c.BAR0_SIZE)
    bar2 = pci.probe_memory_bar(ref.config, pci.BAR2)
    assert (bar2.bits, bar2.prefetchable, bar2.size) == (64, True, ref.mem.info.size)
    assert ref.config.read_int(pci.BAR0, 4) == bar0.original
