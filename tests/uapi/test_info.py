# SPDX-License-Identifier: MIT
"""Device, region and IRQ info: values, capability chains, and the argsz contract (too small
fails with EINVAL; the minimum, exact and larger sizes work; capabilities that do not fit set the
CAPS flag and report the argsz they need)."""

from __future__ import annotations

import ctypes
import errno
import itertools
from collections.abc import Callable

import pytest

from harness.mdev import MdevDevice
from harness.refdev import RefDevice
from harness.refdev import contract as c
from harness.refdev import registers as r
from harness.uapi import OpenDevice, RegionInfo
from harness.uapi.caps import walk_capabilities
from harness.uapi.raw import vfio as v
from tests.uapi import util
from tests.uapi.util import raises_errno

DEVICE_INFO_MIN = 16  # offsetofend(struct vfio_device_info, num_irqs)
REGION_INFO_MIN = ctypes.sizeof(v.vfio_region_info)  # offsetofend(..., offset)
IRQ_INFO_MIN = ctypes.sizeof(v.vfio_irq_info)
KNOWN_REGION_FLAGS = (
    v.VFIO_REGION_INFO_FLAG_READ
    | v.VFIO_REGION_INFO_FLAG_WRITE
    | v.VFIO_REGION_INFO_FLAG_MMAP
    | v.VFIO_REGION_INFO_FLAG_CAPS
)
KNOWN_IRQ_FLAGS = (
    v.VFIO_IRQ_INFO_EVENTFD
    | v.VFIO_IRQ_INFO_MASKABLE
    | v.VFIO_IRQ_INFO_AUTOMASKED
    | v.VFIO_IRQ_INFO_NORESIZE
)
KNOWN_REGION_CAPS = {
    v.VFIO_REGION_INFO_CAP_SPARSE_MMAP,
    v.VFIO_REGION_INFO_CAP_TYPE,
    v.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
    v.VFIO_REGION_INFO_CAP_NVLINK2_SSATGT,
    v.VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD,
}
_TRIGGER_NONE = v.VFIO_IRQ_SET_ACTION_TRIGGER | v.VFIO_IRQ_SET_DATA_NONE
UNKNOWN_IOCTL = 0x3B00 | 99  # _IO(';', 99): below VFIO_BASE, never assigned
TAIL = b"\xa5" * 64  # poison after the struct: must survive when the kernel has nothing there


def region_info_raw(opened: OpenDevice, index: int, argsz: int) -> tuple[v.vfio_region_info, bytes]:
    header, raw = util.raw_info(
        opened.device,
        v.VFIO_DEVICE_GET_REGION_INFO,
        "VFIO_DEVICE_GET_REGION_INFO",
        v.vfio_region_info,
        argsz,
        index=index,
    )
    assert isinstance(header, v.vfio_region_info)
    return header, raw


def regions_with_caps(opened: OpenDevice) -> list[RegionInfo]:
    found = [info for info in util.regions(opened.device) if info.capabilities]
    if not found:
        pytest.skip("no region of the device has capabilities")
    return found


# -- device info ------------------------------------------------------------------------------


def test_device_info(opened: OpenDevice) -> None:
    info = opened.device.info()
    assert info.num_regions > 0
    if info.is_pci:
        # What QEMU's vfio-pci needs: up to config space, and up to MSI-X (ERR and REQ, and
        # the VGA region, may be absent).
        assert info.num_regions > v.VFIO_PCI_CONFIG_REGION_INDEX, info
        assert info.num_irqs > v.VFIO_PCI_MSIX_IRQ_INDEX, info


def test_device_info_argsz_too_small(opened: OpenDevice) -> None:
    request = v.vfio_device_info(argsz=DEVICE_INFO_MIN - 1)
    with raises_errno(errno.EINVAL):
        opened.device.ioctl(v.VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO", request)


@pytest.mark.parametrize("argsz", [DEVICE_INFO_MIN, ctypes.sizeof(v.vfio_device_info), 4096])
def test_device_info_argsz_accepted(opened: OpenDevice, argsz: int) -> None:
    expected = opened.device.info()
    buffer = ctypes.create_string_buffer(max(argsz, 24) + len(TAIL))
    ctypes.memmove(ctypes.addressof(buffer) + 16, TAIL, len(TAIL))
    ctypes.c_uint32.from_buffer(buffer).value = argsz
    opened.device.ioctl(v.VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO", buffer)
    header = v.vfio_device_info.from_buffer_copy(buffer.raw[:24])
    assert (header.num_regions, header.num_irqs) == (expected.num_regions, expected.num_irqs)
    assert header.flags & ~v.VFIO_DEVICE_FLAGS_CAPS == expected.flags & ~v.VFIO_DEVICE_FLAGS_CAPS
    if argsz == DEVICE_INFO_MIN:
        assert buffer.raw[16 : 16 + len(TAIL)] == TAIL, "the kernel wrote past argsz"


def test_device_info_caps_chain(opened: OpenDevice) -> None:
    info = opened.device.info()
    if not info.flags & v.VFIO_DEVICE_FLAGS_CAPS:
        pytest.skip("the device reports no device-info capabilities")
    assert info.capabilities, "CAPS flag set but the chain is empty"
    for cap in info.capabilities:
        assert cap.version >= 1


# -- region info ------------------------------------------------------------------------------


def test_region_info_every_index(opened: OpenDevice) -> None:
    spans: list[tuple[int, int, int]] = []
    failures = util.Failures()
    for info in util.regions(opened.device):
        with failures.check(f"region {info.index}"):
            assert info.flags & ~KNOWN_REGION_FLAGS == 0, f"unknown flags {info.flags:#x}"
            if info.size:
                assert info.readable or info.writable, f"size {info.size:#x}, neither R nor W"
                for area in info.mmap_areas():
                    assert area.offset % util.PAGE_SIZE == 0, f"unaligned mmap area {area}"
                    assert area.size % util.PAGE_SIZE == 0, f"unaligned mmap area {area}"
                    assert area.offset + area.size <= info.size, f"mmap area {area} overflows"
                spans.append((info.offset, info.offset + info.size, info.index))
    spans.sort()
    for (_, end, index), (start, _, other) in itertools.pairwise(spans):
        with failures.check(f"regions {index} and {other}"):
            assert end <= start, "overlap in the device fd"
    failures.verify("the device has no regions")


@pytest.mark.parametrize("where", ["num_regions", "u32_max"])
def test_region_info_bad_index(opened: OpenDevice, where: str) -> None:
    index = opened.device.info().num_regions if where == "num_regions" else 0xFFFFFFFF
    with raises_errno(errno.EINVAL):
        opened.device.region_info(index)


def test_region_info_argsz_too_small(opened: OpenDevice) -> None:
    with raises_errno(errno.EINVAL):
        region_info_raw(opened, util.rw_region(opened.device).index, REGION_INFO_MIN - 1)


def test_region_info_argsz_exact_without_caps(opened: OpenDevice) -> None:
    failures = util.Failures()
    for info in util.regions(opened.device):
        with failures.check(f"region {info.index}"):
            header, _ = region_info_raw(opened, info.index, REGION_INFO_MIN)
            assert (header.size, header.offset) == (info.size, info.offset)
            if info.capabilities:
                # Caps did not fit: flagged, the needed size returned, no chain written.
                assert header.flags & v.VFIO_REGION_INFO_FLAG_CAPS, "CAPS flag missing"
                assert header.argsz > REGION_INFO_MIN, "the needed argsz is not returned"
                assert header.cap_offset == 0, "a chain written past argsz"
            else:
                assert header.argsz == REGION_INFO_MIN
                assert header.flags == info.flags
    failures.verify("the device has no regions")


def test_region_info_caps_one_byte_short(opened: OpenDevice) -> None:
    failures = util.Failures()
    for info in regions_with_caps(opened):
        with failures.check(f"region {info.index}"):
            needed = region_info_raw(opened, info.index, REGION_INFO_MIN)[0].argsz
            header, _ = region_info_raw(opened, info.index, needed - 1)
            assert header.flags & v.VFIO_REGION_INFO_FLAG_CAPS
            assert (header.argsz, header.cap_offset) == (needed, 0)
    failures.verify("no region of the device has capabilities")


@pytest.mark.parametrize("extra", [0, 64])
def test_region_info_caps_chain(opened: OpenDevice, extra: int) -> None:
    failures = util.Failures()
    for info in regions_with_caps(opened):
        with failures.check(f"region {info.index}"):
            needed = region_info_raw(opened, info.index, REGION_INFO_MIN)[0].argsz
            header, raw = region_info_raw(opened, info.index, needed + extra)
            assert header.flags & v.VFIO_REGION_INFO_FLAG_CAPS
            assert header.cap_offset >= REGION_INFO_MIN
            assert header.argsz >= needed  # a big enough argsz is left as it was
            caps = walk_capabilities(raw[:needed], header.cap_offset, REGION_INFO_MIN)
            for cap in caps:
                assert cap.id in KNOWN_REGION_CAPS, f"unknown cap {cap.id}"
                assert cap.version >= 1
            assert [cap.id for cap in caps] == [cap.id for cap in info.capabilities]
    failures.verify("no region of the device has capabilities")


# -- IRQ info ---------------------------------------------------------------------------------


def test_irq_info_every_index(opened: OpenDevice) -> None:
    """Every index below num_irqs answers, or is absent (EINVAL, as vfio-pci's ERR on a
    device that is not PCI Express); an absent one must then refuse SET_IRQS too."""
    failures = util.Failures()
    for index in range(opened.device.info().num_irqs):
        with failures.check(f"IRQ {index}"):
            try:
                info = opened.device.irq_info(index)
            except OSError as exc:
                assert exc.errno == errno.EINVAL, f"GET_IRQ_INFO failed with errno {exc.errno}"
                with raises_errno(errno.EINVAL):
                    opened.device.set_irqs(index, 0, 1, _TRIGGER_NONE)
                continue
            assert info.index == index
            assert info.flags & ~KNOWN_IRQ_FLAGS == 0, f"flags {info.flags:#x}"
            if info.count:
                assert info.eventfd, f"{info.count} vectors but no EVENTFD flag"
            if info.automasked:
                assert info.maskable, "auto-masked but not maskable"
    failures.verify("the device has no IRQ indexes")


def test_irq_info_needs_no_device_info_first(make_mdev: Callable[[], MdevDevice]) -> None:
    """GET_IRQ_INFO on a device just opened, before any GET_INFO: a driver that fills its IRQ
    table only when GET_INFO runs answers EINVAL here (QEMU calls GET_INFO first; other users
    need not)."""
    with util.open_device(make_mdev(), util.any_mode()) as fresh:
        info = fresh.device.irq_info(0)
        assert info.index == 0


@pytest.mark.parametrize("where", ["num_irqs", "u32_max"])
def test_irq_info_bad_index(opened: OpenDevice, where: str) -> None:
    index = opened.device.info().num_irqs if where == "num_irqs" else 0xFFFFFFFF
    with raises_errno(errno.EINVAL):
        opened.device.irq_info(index)


def test_irq_info_argsz_too_small(opened: OpenDevice) -> None:
    request = v.vfio_irq_info(argsz=IRQ_INFO_MIN - 1, index=0)
    with raises_errno(errno.EINVAL):
        opened.device.ioctl(v.VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO", request)


def test_irq_info_argsz_larger(opened: OpenDevice) -> None:
    opened.device.info()  # as QEMU does first (see test_irq_info_needs_no_device_info_first)
    expected = opened.device.irq_info(0)
    buffer = ctypes.create_string_buffer(IRQ_INFO_MIN + len(TAIL))
    ctypes.memmove(ctypes.addressof(buffer) + IRQ_INFO_MIN, TAIL, len(TAIL))
    request = v.vfio_irq_info.from_buffer(buffer)
    request.argsz, request.index = IRQ_INFO_MIN + len(TAIL), 0
    del request
    opened.device.ioctl(v.VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO", buffer)
    header = v.vfio_irq_info.from_buffer_copy(buffer.raw[:IRQ_INFO_MIN])
    assert (header.flags, header.count) == (expected.flags, expected.count)
    assert buffer.raw[IRQ_INFO_MIN:] == TAIL, "the driver wrote past the struct"


# -- the reference device's exact layout ------------------------------------------------------


@pytest.mark.refdev
def test_refdev_layout(opened: OpenDevice, ref: RefDevice) -> None:
    info = opened.device.info()
    assert info.is_pci and info.supports_reset
    assert (info.num_regions, info.num_irqs) == (v.VFIO_PCI_NUM_REGIONS, v.VFIO_PCI_NUM_IRQS)
    mem_size = ref.read32(r.REG_MEM_SIZE)
    sizes = {0: c.BAR0_SIZE, 2: mem_size, v.VFIO_PCI_CONFIG_REGION_INDEX: c.CONFIG_SIZE}
    for region in util.regions(opened.device):
        assert region.size == sizes.get(region.index, 0), f"region {region.index}"
    bar2 = opened.device.region_info(2)
    assert bar2.mmappable and bar2.sparse_areas == (util.SparseArea(0, mem_size // 2),)
    assert not opened.device.region_info(0).mmappable
    counts = [opened.device.irq_info(i).count for i in range(info.num_irqs)]
    assert counts == [1, 1, 0, 1, 1]
    intx = opened.device.irq_info(v.VFIO_PCI_INTX_IRQ_INDEX)
    assert intx.maskable and intx.automasked and not intx.noresize


# -- ioctls the driver must refuse ----------------------------------------------------------


def test_unknown_ioctl_device(opened: OpenDevice) -> None:
    with raises_errno(errno.ENOTTY):
        opened.device.ioctl(UNKNOWN_IOCTL, "unknown ioctl")


def test_container_ioctl_on_device_fd(opened: OpenDevice) -> None:
    with raises_errno(errno.ENOTTY):
        opened.device.ioctl(v.VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO", 0)
