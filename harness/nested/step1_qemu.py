# SPDX-License-Identifier: MIT
"""Step 1: QEMU gets the device through the VFIO API (container and group) and reads its
regions and IRQs; and it DMA-maps guest RAM. QEMU's own account: its open files and the
vfio_* trace events it logs for each VFIO call.
"""

from __future__ import annotations

import re

from harness.core.checks import equal, expect
from harness.nested.scenario import QemuView, Scenario
from harness.nested.trace import covered, mapped_ranges, trace_lines
from harness.refdev import contract as c

_GET_DEVICE = re.compile(r"flags: (0x)?[0-9a-f]+, regions: (\d+), irqs: (\d+)")

_REGION = re.compile(
    r"region (\d+) \"[^\"]*\", flags: (0x[0-9a-f]+), offset: \S+, size: (0x[0-9a-f]+)"
)

_SPARSE = re.compile(r"sparse entry (\d+) \[(0x[0-9a-f]+) - (0x[0-9a-f]+)\]")


def check_vfio_files(qemu: QemuView, group: str) -> None:
    files = qemu.open_files()
    for needed in ("/dev/vfio/vfio", f"/dev/vfio/{group}"):
        expect(needed in files, f"QEMU has no open {needed} (its fds: {sorted(set(files))})")
    expect(
        any("vfio-device" in f for f in files),
        f"QEMU holds no VFIO device fd (anon_inode:[vfio-device]); its fds: {sorted(set(files))}",
    )


def check_trace_device(trace: str, uuid: str) -> None:
    lines = [line for line in trace_lines(trace, "vfio_get_device") if uuid in line]
    expect(
        bool(lines),
        f"no vfio_get_device event for {uuid} in QEMU's trace (VFIO_GROUP_GET_DEVICE_FD)",
    )
    found = _GET_DEVICE.search(lines[0])
    expect(found is not None, f"unexpected vfio_get_device line {lines[0]!r}")
    assert found is not None
    regions, irqs = int(found.group(2)), int(found.group(3))
    expect(regions >= 9, f"VFIO_DEVICE_GET_INFO: {regions} regions, a vfio-pci device has >= 9")
    equal(irqs, 5, "VFIO_DEVICE_GET_INFO num_irqs")


def check_trace_regions(trace: str, mem_size: int) -> None:
    regions = {}
    for line in trace_lines(trace, "vfio_region_setup"):
        found = _REGION.search(line)
        if found:
            regions[int(found.group(1))] = (int(found.group(2), 16), int(found.group(3), 16))
    expect(0 in regions and 2 in regions, f"QEMU read no region info for BAR0/BAR2: {regions}")
    equal(regions[0][1], c.BAR0_SIZE, "BAR0 region size QEMU read (VFIO_DEVICE_GET_REGION_INFO)")
    equal(regions[2][1], mem_size, "BAR2 region size QEMU read")
    expect(regions[2][0] & 0x4 != 0, f"BAR2 region flags {regions[2][0]:#x} lack MMAP (0x4)")
    sparse = [_SPARSE.search(line) for line in trace_lines(trace, "vfio_region_sparse_mmap_entry")]
    areas = [(int(m.group(2), 16), int(m.group(3), 16)) for m in sparse if m]
    equal(areas, [(0, mem_size // 2 - 1)], "BAR2 sparse mmap areas QEMU read")
    mapped = [line for line in trace_lines(trace, "vfio_region_mmap") if "BAR 2" in line]
    expect(bool(mapped), "QEMU did not mmap BAR2's sparse area (no vfio_region_mmap BAR 2)")
    config = trace_lines(trace, "vfio_populate_device_config")
    expect(bool(config), "QEMU did not read the config region's info")


def check_trace_irqs(trace: str) -> None:
    msi = trace_lines(trace, "vfio_msi_setup")
    expect(bool(msi), "QEMU found no MSI capability (no vfio_msi_setup event)")
    expect("@0x40" in msi[0], f"QEMU's MSI capability is not at 0x40: {msi[0]!r}")
    expect(
        bool(trace_lines(trace, "vfio_intx_enable")),
        "QEMU did not set up INTx (no vfio_intx_enable: VFIO_DEVICE_GET_IRQ_INFO/SET_IRQS)",
    )


def check_ram_is_dma_mapped(s: Scenario) -> None:
    start, size = s.machine.dma_area()
    ranges = mapped_ranges(s.qemu.trace())
    expect(
        covered(ranges, start, size),
        f"guest RAM [{start:#x}, {start + size:#x}) used for DMA is not in any range QEMU "
        f"DMA-mapped (VFIO_IOMMU_MAP_DMA; mapped: {[(hex(a), hex(b)) for a, b in ranges]})",
    )
