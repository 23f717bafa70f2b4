# SPDX-License-Identifier: MIT
"""The one place that calls ioctl(2).

`fcntl.ioctl` cannot both pass a pointer and return the call's integer result (which
VFIO_GROUP_GET_DEVICE_FD and VFIO_CHECK_EXTENSION need), so call libc directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

from harness.uapi.errors import IoctlError

_libc = ctypes.CDLL(None, use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

# What an ioctl's third argument can be: nothing, a plain integer, or a ctypes object/buffer
# that the kernel reads and writes in place.
IoctlArg = int | ctypes.Array[ctypes.c_char] | ctypes.Structure | ctypes.c_int32 | None


def address_of(arg: ctypes.Array[ctypes.c_char] | ctypes.Structure | ctypes.c_int32) -> int:
    return ctypes.addressof(arg)


def ioctl(fd: int, request: int, name: str, arg: IoctlArg = None) -> int:
    """Issue `request` on `fd`; return the result or raise IoctlError naming `name`."""
    if arg is None:
        raw: int | None = None
    elif isinstance(arg, int):
        raw = arg
    else:
        raw = address_of(arg)
    result: int = _ioctl(fd, request, raw)
    if result < 0:
        err = ctypes.get_errno()
        raise IoctlError(name, err)
    return result


def close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
