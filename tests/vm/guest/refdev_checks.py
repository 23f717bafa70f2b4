# SPDX-License-Identifier: MIT
"""The in-guest half of tests/vm/test_refdev.py, run with the module already loaded.

Drives the reference device through sysfs (harness.mdev) and VFIO (harness.uapi, refdev):
types and available_instances, one device of every type, its registers, config space, BAR
sizes, every DMA mode, kept pins released by unmap, then removal; given the module's path,
rmmod with a device open (refused) and with devices present (removes them), then insmod
again. Every check runs even if an earlier one failed (unless it depends on it); the last
stdout line is a JSON object
{check: "ok" | what went wrong}, which the host test asserts on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from harness.core.checks import describe, equal, expect, pages_spanned, same_bytes
from harness.mdev import MdevDevice, MdevSysfs, MdevType
from harness.refdev import Direction, Method, RefDevice
from harness.refdev import contract as c
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.uapi import PAGE_SIZE, DmaBuffer, OpenDevice, open_type1
from harness.uapi.container import Container
from harness.uapi.open_device import Type1Mapper
from harness.uapi.raw import vfio as v

IOVA = 0x1000_0000
BUFFER_SIZE = 64 * PAGE_SIZE
# Three areas of the buffer: the copy's source, and destinations for device->guest and g->g.
AREA = 16 * PAGE_SIZE
SRC, DST, DST2 = 0, AREA, 2 * AREA
# Misaligned start and a length crossing several page boundaries.
START = PAGE_SIZE - 0x10
LENGTH = 3 * PAGE_SIZE + 123


T = TypeVar("T")


class Checks:
    def __init__(self) -> None:
        self.results: dict[str, str] = {}

    def run(self, name: str, check: Callable[[], object]) -> bool:
        """Whether `check` passed; its failure is recorded under `name`."""
        self.get(name, check)
        return self.results[name] == "ok"

    def get(self, name: str, make: Callable[[], T]) -> T | None:
        """What `make` returns, or None when it raised (recorded under `name`)."""
        try:
            value = make()
        except Exception as exc:  # every failure is reported, none stops the others
            self.results[name] = describe(exc, __file__)
            return None
        self.results[name] = "ok"
        return value


@dataclass
class Pool:
    """What the driver has handed out, to predict available_instances."""

    created: dict[str, int]
    used: int = 0

    def expected(self, ref_type: c.RefType) -> int:
        return c.available_instances(ref_type.mem_size, self.created[ref_type.type_id], self.used)


def check_sysfs(sysfs: MdevSysfs, pool: Pool) -> None:
    parent = sysfs.parent(c.PARENT_NAME)
    equal(parent.type_ids(), sorted(t.type_id for t in c.TYPES), "type ids")
    for ref_type in c.TYPES:
        mtype = parent.type(ref_type.type_id)
        equal(mtype.name, ref_type.name, f"{ref_type.type_id} name")
        equal(mtype.device_api, c.DEVICE_API, f"{ref_type.type_id} device_api")
        equal(mtype.available_instances, pool.expected(ref_type), f"{ref_type.type_id} available")


def check_available(sysfs: MdevSysfs, pool: Pool) -> None:
    for ref_type in c.TYPES:
        mtype = sysfs.find_type(ref_type.type_id, c.PARENT_NAME)
        equal(mtype.available_instances, pool.expected(ref_type), f"{ref_type.type_id} available")


def check_identity(dev: RefDevice, ref_type: c.RefType) -> None:
    equal(dev.read32(r.REG_ID), r.ID_VALUE, "ID")
    equal(dev.read32(r.REG_VERSION), r.VERSION_VALUE, "VERSION")
    equal(dev.read32(r.REG_TYPE), ref_type.index, "TYPE")
    equal(dev.read32(r.REG_MEM_SIZE), ref_type.mem_size, "MEM_SIZE")


def check_regions(opened: OpenDevice, ref_type: c.RefType) -> None:
    info = opened.device.info()
    expect(info.is_pci, f"device flags {info.flags:#x} lack VFIO_DEVICE_FLAGS_PCI")
    expect(info.supports_reset, f"device flags {info.flags:#x} lack VFIO_DEVICE_FLAGS_RESET")
    equal(info.num_regions >= v.VFIO_PCI_NUM_REGIONS, True, f"num_regions {info.num_regions}")
    equal(info.num_irqs, v.VFIO_PCI_NUM_IRQS, "num_irqs")
    sizes = {
        v.VFIO_PCI_BAR0_REGION_INDEX: c.BAR0_SIZE,
        v.VFIO_PCI_BAR2_REGION_INDEX: ref_type.mem_size,
        v.VFIO_PCI_CONFIG_REGION_INDEX: c.CONFIG_SIZE,
    }
    for index, size in sizes.items():
        region = opened.device.region_info(index)
        equal(region.size, size, f"region {index} size")
        expect(region.readable and region.writable, f"region {index} flags {region.flags:#x}")


def check_config(dev: RefDevice, ref_type: c.RefType) -> None:
    config = dev.config
    equal(config.read_int(pci.VENDOR_ID, 2), r.PCI_VENDOR_ID, "vendor ID")
    equal(config.read_int(pci.DEVICE_ID, 2), r.PCI_DEVICE_ID, "device ID")
    equal(config.read_int(pci.CLASS_REVISION, 4), r.PCI_CLASS << 8 | r.PCI_REVISION, "class/rev")
    equal(config.read_int(pci.SUBSYSTEM_VENDOR_ID, 2), r.PCI_VENDOR_ID, "subsystem vendor")
    equal(config.read_int(pci.SUBSYSTEM_ID, 2), ref_type.subsystem_id, "subsystem ID")
    equal(config.read_int(pci.CAPABILITY_LIST, 1), r.PCI_MSI_CAP_OFFSET, "capability pointer")
    expect(bool(config.read_int(pci.STATUS, 2) & pci.STATUS_CAP_LIST), "status lacks CAP_LIST")
    equal(config.read_int(pci.INTERRUPT_PIN, 1), 1, "interrupt pin")


def check_bars(dev: RefDevice, ref_type: c.RefType) -> None:
    bar0 = pci.probe_memory_bar(dev.config, pci.BAR0)
    equal((bar0.bits, bar0.prefetchable, bar0.size), (32, False, c.BAR0_SIZE), "BAR0 sizing")
    equal(bar0.flags & pci.BAR_SPACE_IO, 0, "BAR0 is memory")
    bar2 = pci.probe_memory_bar(dev.config, pci.BAR2)
    equal((bar2.bits, bar2.prefetchable, bar2.size), (64, True, ref_type.mem_size), "BAR2 sizing")
    equal(dev.config.read_int(pci.BAR0, 4), bar0.original, "BAR0 after sizing")
    equal(dev.config.read_int(pci.BAR2, 4), bar2.original & 0xFFFFFFFF, "BAR2 after sizing")


class DmaChecks:
    """One device's DMA engine, over a buffer mapped at IOVA."""

    def __init__(self, dev: RefDevice, buffer: DmaBuffer) -> None:
        self.dev = dev
        self.buffer = buffer

    def to_device(self, method: Method) -> None:
        data = os.urandom(LENGTH)
        self.buffer.write(SRC + START, data)
        offset = 0x1230 + method * 0x100  # each copy its own spot in device memory
        self.copy(
            IOVA + SRC + START, offset, Direction.TO_DEVICE, method, pages_spanned(START, LENGTH)
        )
        same_bytes(self.dev.mem_read(offset, LENGTH), data, "BAR2 after the copy")

    def from_device(self, method: Method) -> None:
        data = os.urandom(LENGTH)
        offset = 0x8010 + method * 0x100
        self.dev.mem_write(offset, data)
        self.copy(
            offset, IOVA + DST + START, Direction.FROM_DEVICE, method, pages_spanned(START, LENGTH)
        )
        same_bytes(self.buffer.read(DST + START, LENGTH), data, "guest memory after the copy")

    def guest_to_guest(self, method: Method) -> None:
        data = os.urandom(LENGTH)
        self.buffer.write(SRC + START, data)
        pages = 2 * pages_spanned(START, LENGTH)  # both sides are guest memory
        self.copy(IOVA + SRC + START, IOVA + DST2 + START, Direction.GUEST_TO_GUEST, method, pages)
        same_bytes(self.buffer.read(DST2 + START, LENGTH), data, "destination after the copy")

    def copy(self, src: int, dst: int, direction: Direction, method: Method, pages: int) -> None:
        before = self.dev.counters()
        self.dev.dma(src, dst, LENGTH, direction, method).check(f"{direction.name} {method.name}")
        delta = self.dev.counters().minus(before)
        equal(delta.dma_done, 1, "DMA_DONE_COUNT increment")
        equal(delta.pinned_pages, 0, "PINNED_PAGES change (nothing kept)")
        pinned = pages if method == Method.PIN else 0
        equal((delta.total_pins, delta.total_unpins), (pinned, pinned), "TOTAL_PINS/UNPINS delta")

    def keep_pinned_then_unmap(self, unmap: Callable[[], int]) -> None:
        data = os.urandom(LENGTH)
        self.buffer.write(SRC + START, data)
        pages = pages_spanned(START, LENGTH)
        before = self.dev.counters()
        result = self.dev.dma(
            IOVA + SRC + START, 0x4000, LENGTH, Direction.TO_DEVICE, Method.PIN, True
        )
        result.check("TO_DEVICE PIN keep-pinned")
        same_bytes(self.dev.mem_read(0x4000, LENGTH), data, "BAR2 after the copy")
        kept = self.dev.counters()
        equal(kept.pinned_pages, before.pinned_pages + pages, "PINNED_PAGES while kept")
        equal(kept.minus(before).total_pins, pages, "TOTAL_PINS delta")
        equal(unmap(), BUFFER_SIZE, "bytes unmapped")
        after = self.dev.counters()
        equal(after.pinned_pages, 0, "PINNED_PAGES after unmap")
        equal(after.minus(kept).dma_unmap_calls, 1, "DMA_UNMAP_CALLS delta")
        equal(after.total_pins - after.total_unpins, 0, "pins minus unpins after unmap")

    def dirty_tracking(self, container: Container) -> None:
        """Pages the device writes, through pins or vfio_dma_rw, show up in type1's bitmap."""
        container.dirty_pages_start()
        try:
            container.dirty_pages_bitmap(IOVA, BUFFER_SIZE, PAGE_SIZE)  # start from clean
            self.dev.mem_write(0x9000, os.urandom(LENGTH))
            targets = {Method.PIN: DST, Method.RW: DST2}
            for method, area in targets.items():
                result = self.dev.dma(
                    0x9000, IOVA + area + START, LENGTH, Direction.FROM_DEVICE, method
                )
                result.check(f"FROM_DEVICE {method.name} while tracking")
            bitmap = container.dirty_pages_bitmap(IOVA, BUFFER_SIZE, PAGE_SIZE)
        finally:
            container.dirty_pages_stop()
        dirty = {i for i in range(BUFFER_SIZE // PAGE_SIZE) if bitmap[i // 8] >> (i % 8) & 1}
        for method, area in targets.items():
            first = (area + START) // PAGE_SIZE
            written = set(range(first, first + pages_spanned(START, LENGTH)))
            missing = sorted(written - dirty)
            expect(not missing, f"pages written by {method.name} DMA not dirty: {missing}")
        last = BUFFER_SIZE // PAGE_SIZE - 1
        expect(last not in dirty, f"page {last}, never touched, is dirty")


def check_device(checks: Checks, device: MdevDevice, ref_type: c.RefType) -> None:
    name = ref_type.sysfs_name
    group = device.iommu_group
    if group is None:
        checks.results[f"{name}: open (type1)"] = f"{device.uuid} has no iommu_group"
        return
    opened = checks.get(f"{name}: open (type1)", lambda: open_type1(group, device.uuid))
    if opened is None:
        return
    with opened, DmaBuffer(BUFFER_SIZE) as buffer:
        checks.run(f"{name}: device and region info", lambda: check_regions(opened, ref_type))
        dev = checks.get(f"{name}: RefDevice", lambda: RefDevice(opened.device))
        if dev is None:
            return
        checks.run(f"{name}: ID/VERSION/TYPE/MEM_SIZE", lambda: check_identity(dev, ref_type))
        checks.run(f"{name}: config space", lambda: check_config(dev, ref_type))
        checks.run(f"{name}: BAR sizing", lambda: check_bars(dev, ref_type))
        if not checks.run(f"{name}: map", lambda: opened.dma.map_buffer(IOVA, buffer)):
            return
        dma = DmaChecks(dev, buffer)
        for method in Method:
            m = method.name.lower()
            checks.run(f"{name}: dma to-device {m}", partial(dma.to_device, method))
            checks.run(f"{name}: dma from-device {m}", partial(dma.from_device, method))
            checks.run(f"{name}: dma guest-to-guest {m}", partial(dma.guest_to_guest, method))
        if isinstance(opened.dma, Type1Mapper):
            container = opened.dma.container
            checks.run(f"{name}: dirty bitmap", lambda: dma.dirty_tracking(container))
        checks.run(
            f"{name}: keep-pinned, then unmap",
            lambda: dma.keep_pinned_then_unmap(lambda: opened.dma.unmap(IOVA, BUFFER_SIZE)),
        )


def rmmod() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rmmod", c.MODULE_NAME], capture_output=True, text=True, check=False)


def check_rmmod_refused_while_open(sysfs: MdevSysfs) -> None:
    """An open device holds the module: rmmod says it is in use, and the device still works
    (devices of every type are present, so the later rmmod has them all to remove)."""
    devices = [sysfs.find_type(t.type_id, c.PARENT_NAME).create() for t in c.TYPES]
    group = devices[0].iommu_group
    expect(group is not None, f"{devices[0].uuid} has no iommu_group")
    assert group is not None
    with open_type1(group, devices[0].uuid) as opened:
        refused = rmmod()
        expect(refused.returncode != 0, "rmmod succeeded while a device was open")
        expect("in use" in refused.stderr, f"rmmod's refusal: {refused.stderr.strip()!r}")
        check_identity(RefDevice(opened.device), c.TYPES[0])
    expect(all(d.exists for d in devices), "a device went away after the refused rmmod")


def check_rmmod_removes_all(sysfs: MdevSysfs) -> None:
    present = sysfs.device_uuids()
    expect(len(present) >= len(c.TYPES), f"devices before rmmod: {present}")
    done = rmmod()
    expect(done.returncode == 0, f"rmmod with closed devices failed: {done.stderr.strip()!r}")
    expect(not sysfs.device_uuids(), f"devices left after rmmod: {sysfs.device_uuids()}")
    expect(c.PARENT_NAME not in sysfs.parent_names(), "the parent is still registered")


def check_insmod_again(sysfs: MdevSysfs, module: str) -> None:
    subprocess.run(["insmod", module], capture_output=True, text=True, check=True)
    device = sysfs.find_type(c.SMALL.type_id, c.PARENT_NAME).create()
    group = device.iommu_group
    expect(group is not None, f"{device.uuid} has no iommu_group")
    assert group is not None
    with open_type1(group, device.uuid) as opened, DmaBuffer(BUFFER_SIZE) as buffer:
        dev = RefDevice(opened.device)
        check_identity(dev, c.SMALL)
        opened.dma.map_buffer(IOVA, buffer)
        DmaChecks(dev, buffer).to_device(Method.PIN)
    device.remove()


def check_module_lifetime(checks: Checks, sysfs: MdevSysfs, module: str) -> None:
    """rmmod with a device open, rmmod with devices present, then insmod again: each step
    only after the one before passed."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("rmmod while a device is open: refused", partial(check_rmmod_refused_while_open, sysfs)),
        ("rmmod with devices present: removes them", partial(check_rmmod_removes_all, sysfs)),
        ("insmod again: a new device copies", partial(check_insmod_again, sysfs, module)),
    ]
    for name, step in steps:
        if not checks.run(name, step):
            return


def main() -> None:
    checks = Checks()
    sysfs = MdevSysfs()
    pool = Pool(created={t.type_id: 0 for t in c.TYPES})
    if not checks.run(
        "sysfs: parent, types, available_instances", lambda: check_sysfs(sysfs, pool)
    ):
        print(json.dumps(checks.results))
        return
    devices: list[tuple[MdevDevice, c.RefType]] = []
    for ref_type in c.TYPES:
        mtype: MdevType = sysfs.find_type(ref_type.type_id, c.PARENT_NAME)

        def create(mtype: MdevType = mtype, ref_type: c.RefType = ref_type) -> None:
            devices.append((mtype.create(), ref_type))
            pool.created[ref_type.type_id] += 1
            pool.used += ref_type.mem_size
            check_available(sysfs, pool)

        checks.run(f"{ref_type.sysfs_name}: create, available_instances", create)
    for device, ref_type in devices:
        check_device(checks, device, ref_type)
    for device, ref_type in devices:

        def remove(device: MdevDevice = device, ref_type: c.RefType = ref_type) -> None:
            device.remove()
            pool.created[ref_type.type_id] -= 1
            pool.used -= ref_type.mem_size
            check_available(sysfs, pool)

        checks.run(f"{ref_type.sysfs_name}: remove, available_instances", remove)
    if len(sys.argv) > 1:  # the module's path in the guest, to load it again
        check_module_lifetime(checks, sysfs, sys.argv[1])
    print(json.dumps(checks.results))


if __name__ == "__main__":
    main()
