# SPDX-License-Identifier: MIT
"""Safe wrapper of a VFIO device fd: info, regions, IRQs, reset, features, iommufd binding."""

from __future__ import annotations

import ctypes
import uuid
from dataclasses import dataclass

from harness.uapi.caps import Capability, walk_capabilities
from harness.uapi.fdobject import FdObject, open_node
from harness.uapi.infoquery import argsz_buffer, query_info
from harness.uapi.irq import IrqIndex, IrqInfo
from harness.uapi.raw import vfio as v
from harness.uapi.region import Region, RegionInfo, parse_region_info

_FEATURE_HEADER = ctypes.sizeof(v.vfio_device_feature)


@dataclass(frozen=True)
class DeviceInfo:
    flags: int
    num_regions: int
    num_irqs: int
    capabilities: tuple[Capability, ...]

    @property
    def is_pci(self) -> bool:
        return bool(self.flags & v.VFIO_DEVICE_FLAGS_PCI)

    @property
    def supports_reset(self) -> bool:
        return bool(self.flags & v.VFIO_DEVICE_FLAGS_RESET)


class Device(FdObject):
    """An open VFIO device, however it was opened (group fd or vfio cdev)."""

    @classmethod
    def open_cdev(cls, path: str) -> Device:
        """Open /dev/vfio/devices/vfioN; it must then be bound to an iommufd before use."""
        return cls(open_node(path, "vfio cdev"))

    # -- info ---------------------------------------------------------------------------------

    def info(self) -> DeviceInfo:
        header, buffer = query_info(
            self,
            v.VFIO_DEVICE_GET_INFO,
            "VFIO_DEVICE_GET_INFO",
            v.vfio_device_info,
            lambda _info: None,
            v.VFIO_DEVICE_FLAGS_CAPS,
        )
        caps: list[Capability] = []
        if header.flags & v.VFIO_DEVICE_FLAGS_CAPS:
            caps = walk_capabilities(buffer, header.cap_offset, ctypes.sizeof(header))
        return DeviceInfo(header.flags, header.num_regions, header.num_irqs, tuple(caps))

    def region_info(self, index: int) -> RegionInfo:
        def fill(info: v.vfio_region_info) -> None:
            info.index = index

        header, buffer = query_info(
            self,
            v.VFIO_DEVICE_GET_REGION_INFO,
            "VFIO_DEVICE_GET_REGION_INFO",
            v.vfio_region_info,
            fill,
            v.VFIO_REGION_INFO_FLAG_CAPS,
        )
        return parse_region_info(header, buffer)

    def region(self, index: int) -> Region:
        return Region(self, self.region_info(index))

    def irq_info(self, index: int) -> IrqInfo:
        request = v.vfio_irq_info(argsz=ctypes.sizeof(v.vfio_irq_info), index=index)
        self.ioctl(v.VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO", request)
        return IrqInfo(request.index, request.flags, request.count)

    def irq(self, index: int) -> IrqIndex:
        return IrqIndex(self, self.irq_info(index))

    # -- control ------------------------------------------------------------------------------

    def set_irqs(
        self,
        index: int,
        start: int,
        count: int,
        flags: int,
        data: bytes = b"",
        argsz: int | None = None,
    ) -> None:
        """VFIO_DEVICE_SET_IRQS with any flags and payload (the raw form, for bad input too)."""
        header = v.vfio_irq_set(flags=flags, index=index, start=start, count=count)
        buffer = argsz_buffer(header, data, argsz)
        self.ioctl(v.VFIO_DEVICE_SET_IRQS, "VFIO_DEVICE_SET_IRQS", buffer)

    def reset(self) -> None:
        self.ioctl(v.VFIO_DEVICE_RESET, "VFIO_DEVICE_RESET")

    def feature(self, flags: int, data: bytes = b"", argsz: int | None = None) -> bytes:
        """VFIO_DEVICE_FEATURE: `flags` holds the feature number and GET/SET/PROBE bits.

        Returns the data area as the kernel left it (the GET answer).
        """
        buffer = argsz_buffer(v.vfio_device_feature(flags=flags), data, argsz)
        self.ioctl(v.VFIO_DEVICE_FEATURE, "VFIO_DEVICE_FEATURE", buffer)
        return buffer.raw[_FEATURE_HEADER:]

    def probe_feature(self, feature: int, *, get: bool = False, set: bool = False) -> None:
        """Raise IoctlError (ENOTTY for an unknown feature) unless the device offers it."""
        flags = feature | v.VFIO_DEVICE_FEATURE_PROBE
        if get:
            flags |= v.VFIO_DEVICE_FEATURE_GET
        if set:
            flags |= v.VFIO_DEVICE_FEATURE_SET
        self.feature(flags)

    def query_gfx_plane(self, flags: int, drm_plane_type: int = 0) -> v.vfio_device_gfx_plane_info:
        request = v.vfio_device_gfx_plane_info(
            argsz=ctypes.sizeof(v.vfio_device_gfx_plane_info),
            flags=flags,
            drm_plane_type=drm_plane_type,
        )
        self.ioctl(v.VFIO_DEVICE_QUERY_GFX_PLANE, "VFIO_DEVICE_QUERY_GFX_PLANE", request)
        return request

    def get_gfx_dmabuf(self, dmabuf_id: int) -> int:
        """A dma-buf fd for a plane; the caller owns (and must close) it."""
        plane = ctypes.c_uint32(dmabuf_id)
        address = ctypes.addressof(plane)
        return self.ioctl(v.VFIO_DEVICE_GET_GFX_DMABUF, "VFIO_DEVICE_GET_GFX_DMABUF", address)

    # -- iommufd (vfio cdev) ------------------------------------------------------------------

    def bind_iommufd(self, iommufd: int | FdObject, token: uuid.UUID | None = None) -> int:
        """VFIO_DEVICE_BIND_IOMMUFD; returns the device's iommufd object id."""
        fd = iommufd if isinstance(iommufd, int) else iommufd.fd
        request = v.vfio_device_bind_iommufd(
            argsz=ctypes.sizeof(v.vfio_device_bind_iommufd), iommufd=fd
        )
        token_bytes = None
        if token is not None:
            token_bytes = ctypes.create_string_buffer(token.bytes, 16)
            request.flags = v.VFIO_DEVICE_BIND_FLAG_TOKEN
            request.token_uuid_ptr = ctypes.addressof(token_bytes)
        self.ioctl(v.VFIO_DEVICE_BIND_IOMMUFD, "VFIO_DEVICE_BIND_IOMMUFD", request)
        return int(request.out_devid)

    def attach_pt(self, pt_id: int, pasid: int | None = None) -> int:
        """Attach to an IOAS or HWPT; returns the pt_id the kernel actually attached."""
        request = v.vfio_device_attach_iommufd_pt(
            argsz=ctypes.sizeof(v.vfio_device_attach_iommufd_pt), pt_id=pt_id
        )
        if pasid is not None:
            request.flags = v.VFIO_DEVICE_ATTACH_PASID
            request.pasid = pasid
        self.ioctl(v.VFIO_DEVICE_ATTACH_IOMMUFD_PT, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", request)
        return int(request.pt_id)

    def detach_pt(self, pasid: int | None = None) -> None:
        request = v.vfio_device_detach_iommufd_pt(
            argsz=ctypes.sizeof(v.vfio_device_detach_iommufd_pt)
        )
        if pasid is not None:
            request.flags = v.VFIO_DEVICE_DETACH_PASID
            request.pasid = pasid
        self.ioctl(v.VFIO_DEVICE_DETACH_IOMMUFD_PT, "VFIO_DEVICE_DETACH_IOMMUFD_PT", request)
