# SPDX-License-Identifier: MIT
"""The safe wrappers marshal exactly what the kernel expects and parse what it returns.

A scripted fake kernel stands in for the ioctls; the real kernel is exercised by the VM suites.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pickle
import struct
from typing import Any

import pytest

from harness.uapi import (
    Container,
    Device,
    IoctlError,
    Iommufd,
    Migration,
    MigState,
    OpenDevice,
    VfioError,
)
from harness.uapi.caps import walk_capabilities
from harness.uapi.errors import CapabilityChainError
from harness.uapi.open_device import IommufdMapper, Type1Mapper
from harness.uapi.raw import iommufd as i
from harness.uapi.raw import vfio as v
from tests.unit.fake_kernel import FakeKernel, KernelErrnoError, fail_with, scripted


def _header(cap_id: int, version: int, next_offset: int) -> bytes:
    return struct.pack("<HHI", cap_id, version, next_offset)


def test_a_real_ioctl_error_names_the_request_and_carries_errno() -> None:
    with (
        Container(os.open("/dev/null", os.O_RDWR)) as not_a_container,
        pytest.raises(IoctlError) as raised,
    ):
        not_a_container.api_version()
    assert raised.value.errno == errno.ENOTTY
    assert raised.value.request == "VFIO_GET_API_VERSION"
    assert isinstance(raised.value, OSError)
    assert "VFIO_GET_API_VERSION" in str(raised.value) and "ENOTTY" in str(raised.value)


def test_errors_survive_pickling_between_processes() -> None:
    error = pickle.loads(pickle.dumps(IoctlError("VFIO_DEVICE_RESET", errno.EBUSY)))
    assert isinstance(error, IoctlError)
    assert error.errno == errno.EBUSY and error.request == "VFIO_DEVICE_RESET"


def test_closed_wrapper_refuses_use() -> None:
    container = Container(os.open("/dev/null", os.O_RDWR))
    container.close()
    container.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        container.api_version()


def test_region_info_grows_the_buffer_and_parses_sparse_and_type_caps() -> None:
    base = ctypes.sizeof(v.vfio_region_info)
    sparse = (
        _header(v.VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, base + 48)
        + struct.pack("<II", 2, 0)
        + struct.pack("<QQQQ", 0, 0x1000, 0x3000, 0x1000)
    )
    typed = _header(v.VFIO_REGION_INFO_CAP_TYPE, 1, 0) + struct.pack("<II", 0x8086, 3)
    caps = sparse + typed
    needed = base + len(caps)

    def region_info(arg: Any) -> int:
        info = v.vfio_region_info.from_buffer(arg)
        assert info.index == 2
        info.flags = v.VFIO_REGION_INFO_FLAG_READ | v.VFIO_REGION_INFO_FLAG_MMAP
        info.flags |= v.VFIO_REGION_INFO_FLAG_CAPS
        info.size, info.offset = 0x4000, 2 << 40
        if info.argsz < needed:
            info.argsz, info.cap_offset = needed, 0
        else:
            info.cap_offset = base
            ctypes.memmove(ctypes.addressof(arg) + base, caps, len(caps))
        return 0

    kernel = FakeKernel({"VFIO_DEVICE_GET_REGION_INFO": region_info})
    info = scripted(Device, kernel).region_info(2)

    assert [struct.unpack_from("<I", c.sent_bytes())[0] for c in kernel.calls] == [base, needed]
    assert (info.index, info.size, info.offset) == (2, 0x4000, 2 << 40)
    assert info.readable and info.mmappable and not info.writable
    assert [(a.offset, a.size) for a in info.mmap_areas()] == [(0, 0x1000), (0x3000, 0x1000)]
    assert info.region_type is not None
    assert (info.region_type.type, info.region_type.subtype) == (0x8086, 3)


def test_a_capability_chain_that_points_outside_the_buffer_is_reported() -> None:
    base = 32
    buffer = bytes(base) + _header(1, 1, 4096)
    with pytest.raises(CapabilityChainError, match="past"):
        walk_capabilities(buffer, base, base)
    looping = bytes(base) + _header(1, 1, base)
    with pytest.raises(CapabilityChainError, match="loops"):
        walk_capabilities(looping, base, base)
    with pytest.raises(CapabilityChainError, match="overlaps"):
        walk_capabilities(looping, 8, base)


def test_sparse_cap_claiming_more_areas_than_it_holds_is_reported() -> None:
    base = ctypes.sizeof(v.vfio_region_info)
    lying = _header(v.VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 0) + struct.pack("<II", 5, 0)

    def region_info(arg: Any) -> int:
        info = v.vfio_region_info.from_buffer(arg)
        info.flags = v.VFIO_REGION_INFO_FLAG_CAPS
        if info.argsz < base + len(lying):
            info.argsz = base + len(lying)
        else:
            info.cap_offset = base
            ctypes.memmove(ctypes.addressof(arg) + base, lying, len(lying))
        return 0

    device = scripted(Device, FakeKernel({"VFIO_DEVICE_GET_REGION_INFO": region_info}))
    with pytest.raises(CapabilityChainError, match="claims 5 entries"):
        device.region_info(0)


def test_type1_info_parses_iova_migration_and_dma_avail_caps() -> None:
    base = ctypes.sizeof(v.vfio_iommu_type1_info)
    iova = _header(v.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, base + 32) + struct.pack(
        "<IIQQ", 1, 0, 0, 0xFEDFFFFF
    )
    migration = _header(v.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1, base + 64) + struct.pack(
        "<I4xQQ", 0, 0x1000, 1 << 20
    )
    avail = _header(v.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 0) + struct.pack("<I", 65535)
    caps = iova + migration + avail

    def get_info(arg: Any) -> int:
        info = v.vfio_iommu_type1_info.from_buffer(arg)
        info.flags = v.VFIO_IOMMU_INFO_PGSIZES | v.VFIO_IOMMU_INFO_CAPS
        info.iova_pgsizes = 0x1000
        if info.argsz < base + len(caps):
            info.argsz = base + len(caps)
        else:
            info.cap_offset = base
            ctypes.memmove(ctypes.addressof(arg) + base, caps, len(caps))
        return 0

    info = scripted(Container, FakeKernel({"VFIO_IOMMU_GET_INFO": get_info})).iommu_info()
    assert info.iova_pgsizes == 0x1000
    assert info.iova_ranges is not None and info.iova_ranges[0].end == 0xFEDFFFFF
    assert info.migration is not None and info.migration.max_dirty_bitmap_size == 1 << 20
    assert info.dma_avail == 65535


def test_set_irqs_sends_header_and_eventfd_payload() -> None:
    kernel = FakeKernel(
        {"VFIO_DEVICE_SET_IRQS": lambda _arg: 0, "VFIO_DEVICE_GET_IRQ_INFO": _irq_info(count=4)}
    )
    device = scripted(Device, kernel)
    device.irq(v.VFIO_PCI_MSI_IRQ_INDEX).attach_eventfds([7, -1], start=1)
    sent = kernel.calls[-1].sent_bytes()
    argsz, flags, index, start, count = struct.unpack_from("<5I", sent)
    assert argsz == len(sent) == 20 + 8
    assert flags == v.VFIO_IRQ_SET_DATA_EVENTFD | v.VFIO_IRQ_SET_ACTION_TRIGGER
    assert (index, start, count) == (v.VFIO_PCI_MSI_IRQ_INDEX, 1, 2)
    assert struct.unpack_from("<2i", sent, 20) == (7, -1)


def _irq_info(count: int) -> Any:
    def handler(arg: Any) -> int:
        arg.flags = v.VFIO_IRQ_INFO_EVENTFD
        arg.count = count
        return 0

    return handler


def test_set_irqs_raw_form_keeps_a_caller_argsz_for_bad_input_tests() -> None:
    kernel = FakeKernel({"VFIO_DEVICE_SET_IRQS": fail_with(errno.EINVAL)})
    with pytest.raises(IoctlError) as raised:
        scripted(Device, kernel).set_irqs(0, 0, 1, v.VFIO_IRQ_SET_DATA_BOOL, b"\x01", argsz=4)
    assert raised.value.errno == errno.EINVAL
    assert struct.unpack_from("<I", kernel.calls[0].sent_bytes())[0] == 4


def test_migration_state_round_trip_hands_back_the_data_fd() -> None:
    read_end, write_end = os.pipe()
    state = {"now": v.VFIO_DEVICE_STATE_RUNNING}

    def feature(arg: Any) -> int:
        header = v.vfio_device_feature.from_buffer(arg)
        body = v.vfio_device_feature_mig_state.from_buffer(arg, ctypes.sizeof(header))
        if header.flags & v.VFIO_DEVICE_FEATURE_SET:
            state["now"] = body.device_state
            body.data_fd = read_end if body.device_state == v.VFIO_DEVICE_STATE_STOP_COPY else -1
        else:
            body.device_state = state["now"]
        return 0

    migration = Migration(scripted(Device, FakeKernel({"VFIO_DEVICE_FEATURE": feature})))
    assert migration.state() is MigState.RUNNING
    assert migration.set_state(MigState.STOP) is None
    os.write(write_end, b"device state")
    os.close(write_end)
    data_fd = migration.set_state(MigState.STOP_COPY)
    assert data_fd is not None
    with data_fd:
        assert data_fd.read_all() == b"device state"
    assert migration.state() is MigState.STOP_COPY


def test_migration_on_a_device_without_it_raises_enotty() -> None:
    kernel = FakeKernel({"VFIO_DEVICE_FEATURE": fail_with(errno.ENOTTY)})
    with pytest.raises(IoctlError) as raised:
        Migration(scripted(Device, kernel)).flags()
    assert raised.value.errno == errno.ENOTTY


def test_unmap_with_dirty_bitmap_passes_a_user_bitmap_the_kernel_fills() -> None:
    def unmap(arg: Any) -> int:
        header = v.vfio_iommu_type1_dma_unmap.from_buffer(arg)
        assert header.flags == v.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP
        assert header.argsz == ctypes.sizeof(arg)
        bitmap = v.vfio_bitmap.from_buffer(arg, ctypes.sizeof(header))
        assert (bitmap.pgsize, bitmap.size) == (4096, 8)  # 16 pages → one u64
        ctypes.memmove(bitmap.data, struct.pack("<Q", 0b1010), 8)
        return 0

    container = scripted(Container, FakeKernel({"VFIO_IOMMU_UNMAP_DMA": unmap}))
    unmapped, bitmap = container.unmap_dma_dirty(0x100000, 16 * 4096, 4096)
    assert unmapped == 16 * 4096
    assert struct.unpack("<Q", bitmap)[0] == 0b1010


def test_iova_ranges_retries_with_the_size_the_kernel_asked_for() -> None:
    def ranges(arg: Any) -> int:
        if arg.num_iovas < 10:
            arg.num_iovas = 10
            raise KernelErrnoError(errno.EMSGSIZE)
        array = (i.iommu_iova_range * 10).from_address(arg.allowed_iovas)
        for n, slot in enumerate(array):
            slot.start, slot.last = n << 32, (n << 32) + 0xFFF
        arg.out_iova_alignment = 4096
        return 0

    iommufd = scripted(Iommufd, FakeKernel({"IOMMU_IOAS_IOVA_RANGES": ranges}))
    found, alignment = iommufd.iova_ranges(1)
    assert len(found) == 10 and found[3].start == 3 << 32 and alignment == 4096


def test_both_mappers_translate_permissions_to_their_own_flags() -> None:
    type1_kernel = FakeKernel({"VFIO_IOMMU_MAP_DMA": lambda _arg: 0})
    Type1Mapper(scripted(Container, type1_kernel)).map(0x1000, 0x7F0000, 0x2000, writable=False)
    sent = type1_kernel.calls[0].sent_bytes()
    _, flags, vaddr, iova, size = struct.unpack("<IIQQQ", sent)
    assert (flags, vaddr, iova, size) == (v.VFIO_DMA_MAP_FLAG_READ, 0x7F0000, 0x1000, 0x2000)

    iommufd_kernel = FakeKernel({"IOMMU_IOAS_MAP": lambda _arg: 0})
    IommufdMapper(scripted(Iommufd, iommufd_kernel), 5).map(
        0x1000, 0x7F0000, 0x2000, readable=False
    )
    request = i.iommu_ioas_map.from_buffer_copy(iommufd_kernel.calls[0].sent_bytes())
    assert request.flags == i.IOMMU_IOAS_MAP_WRITEABLE | i.IOMMU_IOAS_MAP_FIXED_IOVA
    assert (request.ioas_id, request.iova, request.length) == (5, 0x1000, 0x2000)


def test_open_device_closes_the_device_before_what_it_depends_on() -> None:
    order: list[str] = []

    class Tracked(Device):
        def close(self) -> None:
            if not self.closed:
                order.append("device")
            super().close()

    device = Tracked(os.open("/dev/null", os.O_RDONLY))
    mapper = Type1Mapper(Container(os.open("/dev/null", os.O_RDONLY)))
    with OpenDevice(
        device, mapper, [lambda: order.append("group"), lambda: order.append("container")]
    ):
        pass
    assert order == ["device", "group", "container"]


def test_vfio_error_for_file_operations_names_the_region() -> None:
    error = VfioError("pread region 0 [0x1000+4]", errno.EINVAL)
    assert error.errno == errno.EINVAL and "region 0" in str(error)
