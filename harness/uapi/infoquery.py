# SPDX-License-Identifier: MIT
"""The argsz conventions of VFIO ioctls, done once for every caller.

Info ioctls: the caller sends argsz = sizeof(struct); if the kernel has capabilities that do not
fit it sets the CAPS flag and returns the argsz it needs, and the caller asks again with a bigger
buffer. Ioctls with a trailing payload (SET_IRQS, DEVICE_FEATURE, UNMAP_DMA with a bitmap): argsz
covers header and payload.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import TypeVar

from harness.uapi.fdobject import FdObject

_S = TypeVar("_S", bound=ctypes.Structure)

# Drivers bound the chain; this only stops a broken argsz from making us allocate gigabytes.
MAX_INFO_ARGSZ = 1 << 20


def query_info(
    target: FdObject,
    request: int,
    name: str,
    struct_type: type[_S],
    fill: Callable[[_S], None],
    caps_flag: int,
) -> tuple[_S, bytes]:
    """Issue an info ioctl, growing the buffer once if the capabilities did not fit.

    Returns the header struct (a copy) and the whole buffer the kernel filled, caps included.
    """
    size = ctypes.sizeof(struct_type)
    buffer = ctypes.create_string_buffer(size)
    header = struct_type.from_buffer(buffer)
    header.argsz = size
    fill(header)
    target.ioctl(request, name, buffer)
    needed = int(header.argsz)
    if header.flags & caps_flag and size < needed <= MAX_INFO_ARGSZ:
        del header  # release the export before replacing the buffer
        buffer = ctypes.create_string_buffer(needed)
        header = struct_type.from_buffer(buffer)
        header.argsz = needed
        fill(header)
        target.ioctl(request, name, buffer)
    return struct_type.from_buffer_copy(buffer.raw[:size]), buffer.raw


def argsz_buffer(
    header: ctypes.Structure, payload: bytes = b"", argsz: int | None = None
) -> ctypes.Array[ctypes.c_char]:
    """`header` followed by `payload` (a C flexible array), as one buffer for an ioctl.

    argsz covers both unless the caller overrides it (bad-input tests send a wrong one).
    """
    header.argsz = ctypes.sizeof(header) + len(payload) if argsz is None else argsz
    raw = bytes(header) + payload
    return ctypes.create_string_buffer(raw, len(raw))
