# SPDX-License-Identifier: MIT
"""Errors of the UAPI layer: OSError subclasses that say which call failed.

A conformance test asserts on `errno`; a person reading a failure wants the call's name. Both
are here: `err.errno` is the kernel's errno, and the message names the ioctl or file operation.
"""

from __future__ import annotations

import errno as errno_mod
import os


def errno_name(err: int) -> str:
    return errno_mod.errorcode.get(err, f"errno {err}")


class VfioError(OSError):
    """A VFIO/iommufd operation failed; `operation` names it, `errno` is the kernel's."""

    def __init__(self, operation: str, err: int, detail: str = "") -> None:
        message = f"{operation} failed: {errno_name(err)} ({os.strerror(err)})"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(err, message)
        self.operation = operation

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[type[VfioError], tuple[str, int, str]]:
        # OSError pickles as (errno, strerror); keep our signature so errors survive being
        # shipped between processes (pytest-xdist, the in-guest runner).
        return (type(self), (self.operation, self.errno or 0, ""))


class IoctlError(VfioError):
    """An ioctl returned -1; `request` is its C name, e.g. 'VFIO_DEVICE_GET_REGION_INFO'."""

    def __init__(self, request: str, err: int, detail: str = "") -> None:
        super().__init__(request, err, detail)
        self.request = request


class CapabilityChainError(ValueError):
    """A capability chain returned by the kernel is malformed (a driver bug worth reporting)."""


class ShortTransferError(VfioError):
    """A region access moved fewer bytes than asked, without an errno."""

    def __init__(self, operation: str, wanted: int, moved: int) -> None:
        super().__init__(operation, errno_mod.EIO, f"moved {moved} of {wanted} bytes")
        self.wanted = wanted
        self.moved = moved

    def __reduce__(self) -> tuple[type[VfioError], tuple[str, int, str]]:
        return (VfioError, (self.operation, errno_mod.EIO, f"moved {self.moved} of {self.wanted}"))
