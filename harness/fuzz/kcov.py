# SPDX-License-Identifier: MIT
"""KCOV for the calling thread: which instrumented kernel code (drivers/vfio, the mdev bus and
modules built against a kernel with CONFIG_KCOV, see harness.kmod.tree_module) a block of our
own calls ran, as the program counters of its basic blocks.

    with Kcov() as kcov:
        with kcov.trace() as pcs:
            device.reset()
        print(len(pcs), "blocks")

Documentation/dev-tools/kcov.rst: open /sys/kernel/debug/kcov, KCOV_INIT_TRACE with the
buffer's size in words, mmap it, KCOV_ENABLE with KCOV_TRACE_PC on this thread; word 0 counts
the PCs that follow. Python's mmap module refuses a length past the file's size, which debugfs
says is 0, so libc's mmap maps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
from collections.abc import Iterator

from harness.core.debug_checks import DEBUGFS, mount_debugfs
from harness.uapi.syscall import ioctl

KCOV_PATH = f"{DEBUGFS}/kcov"
KCOV_INIT_TRACE = 0x80086301  # _IOR('c', 1, unsigned long)
KCOV_ENABLE = 0x6364  # _IO('c', 100)
KCOV_DISABLE = 0x6365  # _IO('c', 101)
KCOV_TRACE_PC = 0
WORDS = 1 << 18  # 2 MiB of PCs: far more blocks than one UAPI call runs

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
]  # fmt: skip
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class KcovError(RuntimeError):
    """The kernel has no KCOV, or it could not be set up; the message says which."""


class Kcov:
    """A KCOV buffer enabled for the thread that entered it."""

    def __init__(self, words: int = WORDS) -> None:
        self.words = words
        self._fd = -1
        self._address: int | None = None
        self._area: ctypes.Array[ctypes.c_uint64] | None = None

    def __enter__(self) -> Kcov:
        mount_debugfs()
        try:
            self._fd = os.open(KCOV_PATH, os.O_RDWR)
        except FileNotFoundError:
            raise KcovError(f"no {KCOV_PATH}: the kernel has no CONFIG_KCOV") from None
        try:
            ioctl(self._fd, KCOV_INIT_TRACE, "KCOV_INIT_TRACE", self.words)
            address = _libc.mmap(
                None, self.words * 8, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED,
                self._fd, 0,
            )  # fmt: skip
            if address is None or address == _MAP_FAILED:
                raise KcovError(f"mmap of {KCOV_PATH}: {os.strerror(ctypes.get_errno())}")
            self._address = address
            self._area = (ctypes.c_uint64 * self.words).from_address(address)
            ioctl(self._fd, KCOV_ENABLE, "KCOV_ENABLE", KCOV_TRACE_PC)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                ioctl(self._fd, KCOV_DISABLE, "KCOV_DISABLE", 0)
        self._area = None
        if self._address is not None:
            _libc.munmap(self._address, self.words * 8)
            self._address = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @contextlib.contextmanager
    def trace(self) -> Iterator[list[int]]:
        """The PCs the block's kernel code ran, in the list given (filled when it ends)."""
        area = self._area
        if area is None:
            raise KcovError("Kcov.trace outside `with Kcov()`")
        pcs: list[int] = []
        area[0] = 0
        try:
            yield pcs
        finally:
            count = min(int(area[0]), self.words - 1)
            pcs.extend(area[1 : count + 1])
