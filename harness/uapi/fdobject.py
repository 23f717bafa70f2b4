# SPDX-License-Identifier: MIT
"""Base for every wrapper that owns a file descriptor."""

from __future__ import annotations

import os

from harness.core.closing import Closing
from harness.uapi.errors import VfioError
from harness.uapi.syscall import IoctlArg, close_quietly, ioctl


def open_node(path: str, operation: str, flags: int = os.O_RDWR) -> int:
    """Open a device node, naming it in the error (ENOENT here usually means a missing module)."""
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError as exc:
        raise VfioError(f"{operation}: open({path})", exc.errno or 0) from None


class FdObject(Closing):
    """Owns one fd; closes it exactly once (context manager, explicit close, or GC)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._fd

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def ioctl(self, request: int, name: str, arg: IoctlArg = None) -> int:
        """The raw ioctl on this fd: the escape hatch for argsz and bad-input tests."""
        return ioctl(self.fd, request, name, arg)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            close_quietly(fd)

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"
