# SPDX-License-Identifier: MIT
"""Safe wrapper of a VFIO group (/dev/vfio/N)."""

from __future__ import annotations

import ctypes

from harness.uapi.container import Container
from harness.uapi.device import Device
from harness.uapi.fdobject import FdObject, open_node
from harness.uapi.raw import vfio as v


def group_path(group: int | str) -> str:
    return f"/dev/vfio/{group}" if isinstance(group, int) else group


class Group(FdObject):
    """A VFIO group: joins a container, then hands out device fds by name."""

    @classmethod
    def open(cls, group: int | str) -> Group:
        """Open by number (/dev/vfio/N) or by path."""
        return cls(open_node(group_path(group), "group"))

    def status(self) -> int:
        request = v.vfio_group_status(argsz=ctypes.sizeof(v.vfio_group_status))
        self.ioctl(v.VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS", request)
        return int(request.flags)

    @property
    def viable(self) -> bool:
        return bool(self.status() & v.VFIO_GROUP_FLAGS_VIABLE)

    @property
    def has_container(self) -> bool:
        return bool(self.status() & v.VFIO_GROUP_FLAGS_CONTAINER_SET)

    def set_container(self, container: Container | int) -> None:
        """Join a container (or any fd, for bad-input tests)."""
        fd = ctypes.c_int32(container if isinstance(container, int) else container.fd)
        self.ioctl(v.VFIO_GROUP_SET_CONTAINER, "VFIO_GROUP_SET_CONTAINER", fd)

    def unset_container(self) -> None:
        self.ioctl(v.VFIO_GROUP_UNSET_CONTAINER, "VFIO_GROUP_UNSET_CONTAINER")

    def get_device_fd(self, name: str) -> int:
        """The raw fd; prefer open_device(), which wraps it."""
        buffer = ctypes.create_string_buffer(name.encode())
        return self.ioctl(v.VFIO_GROUP_GET_DEVICE_FD, "VFIO_GROUP_GET_DEVICE_FD", buffer)

    def open_device(self, name: str) -> Device:
        """A device of this group, by name (an mdev's name is its UUID)."""
        return Device(self.get_device_fd(name))
