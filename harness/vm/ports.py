# SPDX-License-Identifier: MIT
"""Host ports for SSH forwarding that cannot collide between VMs started in parallel.

The port must be free when QEMU binds it, but the harness cannot keep it bound until then
(QEMU would fail to bind). The gap between choosing a port and QEMU binding it is closed by a
reservation: an flock on `<lock_dir>/<port>.lock`, held from the choice until the caller says
QEMU has started (its forward is bound). The scheme:

1. the kernel proposes a free port (bind 127.0.0.1:0);
2. the allocator takes the port's lock with LOCK_NB; if another allocator holds it, the port
   is being handed to another VM: try the next proposal;
3. with the lock held, the port is checked still bindable (a leaked QEMU, or anything else,
   may hold it), then returned with the lock.

Two harness processes can therefore never hand out the same port at once: whoever got the
lock first keeps it until its QEMU owns the port, after which the kernel no longer proposes
it. flock is released by the kernel when the holder dies, so a crashed run leaves no stale
reservation (the empty lock files stay; they are reused, never deleted, because unlinking a
lock file races with a new locker).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"
MAX_ATTEMPTS = 64


class PortAllocationError(RuntimeError):
    """No reservable port was found."""


def default_lock_dir() -> Path:
    """Shared by every harness process of this user on this host (ports are host-wide)."""
    return Path(tempfile.gettempdir()) / f"vfio-harness-ports-{os.getuid()}"


def kernel_proposed_port() -> int:
    """A port that is free on 127.0.0.1 right now, chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def is_bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # QEMU's slirp sets SO_REUSEADDR too: a TIME_WAIT left by an old VM is no conflict.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


class PortReservation(contextlib.AbstractContextManager["PortReservation"]):
    """A port and the lock that reserves it; `release()` once QEMU has bound the port."""

    def __init__(self, port: int, lock_fd: int) -> None:
        self.port = port
        self._lock_fd: int | None = lock_fd

    @property
    def held(self) -> bool:
        return self._lock_fd is not None

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def reserve_port(
    lock_dir: Path | None = None,
    propose: Callable[[], int] = kernel_proposed_port,
    attempts: int = MAX_ATTEMPTS,
) -> PortReservation:
    """Reserve a forwarding port; hold the reservation until QEMU listens on it."""
    lock_dir = lock_dir or default_lock_dir()
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _ in range(attempts):
        port = propose()
        fd = _try_lock(lock_dir / f"{port}.lock")
        if fd is None:
            continue
        if is_bindable(port):
            return PortReservation(port, fd)
        os.close(fd)
    raise PortAllocationError(f"no free, unreserved port after {attempts} attempts")


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in {errno.EWOULDBLOCK, errno.EAGAIN}:
            return None
        raise
    return fd
