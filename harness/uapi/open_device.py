# SPDX-License-Identifier: MIT
"""One interface over the two ways to open a VFIO device.

type1: container + group + GROUP_GET_DEVICE_FD; DMA through MAP_DMA/UNMAP_DMA.
iommufd: vfio cdev + BIND_IOMMUFD + ATTACH_IOMMUFD_PT to an IOAS; DMA through IOAS_MAP/UNMAP.
A test written against `OpenDevice` (its `device` and `dma`) runs unchanged in both modes.
"""

from __future__ import annotations

import abc
import contextlib
import enum
from collections.abc import Callable

from harness.core.closing import Closing
from harness.uapi.container import DEFAULT_CONTAINER_PATH, Container
from harness.uapi.device import Device
from harness.uapi.dma import DmaBuffer
from harness.uapi.group import Group
from harness.uapi.iommufd import ALL_IOVA, DEFAULT_IOMMUFD_PATH, Iommufd
from harness.uapi.raw import iommufd as i
from harness.uapi.raw import vfio as v


class IommuMode(enum.StrEnum):
    TYPE1 = "type1"
    IOMMUFD = "iommufd"


class DmaMapper(abc.ABC):
    """Maps user memory into the device's IO address space, whichever backend is in use."""

    mode: IommuMode

    @abc.abstractmethod
    def map(
        self, iova: int, vaddr: int, size: int, *, readable: bool = True, writable: bool = True
    ) -> None: ...

    @abc.abstractmethod
    def unmap(self, iova: int, size: int) -> int:
        """Returns the number of bytes unmapped."""

    @abc.abstractmethod
    def unmap_all(self) -> int: ...

    def map_buffer(
        self, iova: int, buffer: DmaBuffer, *, readable: bool = True, writable: bool = True
    ) -> None:
        self.map(iova, buffer.vaddr, buffer.size, readable=readable, writable=writable)


class Type1Mapper(DmaMapper):
    mode = IommuMode.TYPE1

    def __init__(self, container: Container) -> None:
        self.container = container

    def map(
        self, iova: int, vaddr: int, size: int, *, readable: bool = True, writable: bool = True
    ) -> None:
        flags = (v.VFIO_DMA_MAP_FLAG_READ if readable else 0) | (
            v.VFIO_DMA_MAP_FLAG_WRITE if writable else 0
        )
        self.container.map_dma(iova, size, vaddr, flags)

    def unmap(self, iova: int, size: int) -> int:
        return self.container.unmap_dma(iova, size)

    def unmap_all(self) -> int:
        return self.container.unmap_all()


class IommufdMapper(DmaMapper):
    mode = IommuMode.IOMMUFD

    def __init__(self, iommufd: Iommufd, ioas_id: int) -> None:
        self.iommufd = iommufd
        self.ioas_id = ioas_id

    def map(
        self, iova: int, vaddr: int, size: int, *, readable: bool = True, writable: bool = True
    ) -> None:
        flags = (i.IOMMU_IOAS_MAP_READABLE if readable else 0) | (
            i.IOMMU_IOAS_MAP_WRITEABLE if writable else 0
        )
        self.iommufd.ioas_map(self.ioas_id, vaddr, size, iova=iova, flags=flags)

    def unmap(self, iova: int, size: int) -> int:
        return self.iommufd.ioas_unmap(self.ioas_id, iova, size)

    def unmap_all(self) -> int:
        return self.iommufd.ioas_unmap(self.ioas_id, 0, ALL_IOVA)


class OpenDevice(Closing):
    """A device together with what keeps it usable; closes all of it in the right order."""

    def __init__(self, device: Device, dma: DmaMapper, closers: list[Callable[[], None]]) -> None:
        self.device = device
        self.dma = dma
        self._closers = closers  # run in order after the device fd is closed

    @property
    def mode(self) -> IommuMode:
        return self.dma.mode

    def close(self) -> None:
        self.device.close()
        closers, self._closers = self._closers, []
        for close in closers:
            with contextlib.suppress(OSError):
                close()


def open_type1(
    group: int | str,
    device_name: str,
    *,
    iommu_type: int = v.VFIO_TYPE1v2_IOMMU,
    container_path: str = DEFAULT_CONTAINER_PATH,
) -> OpenDevice:
    """Container → group → SET_IOMMU → device fd. `container_path` may name iommufd's compat
    container."""
    with contextlib.ExitStack() as undo:
        container = undo.enter_context(Container.open(container_path))
        grp = undo.enter_context(Group.open(group))
        grp.set_container(container)
        container.set_iommu(iommu_type)
        device = grp.open_device(device_name)
        undo.pop_all()
    return OpenDevice(device, Type1Mapper(container), [grp.close, container.close])


def open_iommufd(
    cdev_path: str,
    *,
    iommufd_path: str = DEFAULT_IOMMUFD_PATH,
    ioas_id: int | None = None,
    iommufd: Iommufd | None = None,
) -> OpenDevice:
    """vfio cdev → BIND_IOMMUFD → a fresh IOAS (unless given) → ATTACH_IOMMUFD_PT."""
    with contextlib.ExitStack() as undo:
        owns_iommufd = iommufd is None
        ctx = iommufd if iommufd is not None else undo.enter_context(Iommufd.open(iommufd_path))
        device = undo.enter_context(Device.open_cdev(cdev_path))
        device.bind_iommufd(ctx)
        ioas = ctx.ioas_alloc() if ioas_id is None else ioas_id
        device.attach_pt(ioas)
        undo.pop_all()
    closers: list[Callable[[], None]] = [ctx.close] if owns_iommufd else []
    return OpenDevice(device, IommufdMapper(ctx, ioas), closers)


__all__ = [
    "DmaMapper",
    "IommuMode",
    "IommufdMapper",
    "OpenDevice",
    "Type1Mapper",
    "open_iommufd",
    "open_type1",
]
