# SPDX-License-Identifier: MIT
"""Lines from a socket with a deadline on every wait: QMP, qtest and serial consoles are all
line based, and a QEMU that died or hangs must not hang us."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

from harness.core.closing import Closing


class ConnectionClosedError(EOFError):
    """The other end closed the connection (QEMU exited)."""


class LineReader:
    """Lines from a socket, with a deadline on every wait."""

    def __init__(self, sock: socket.socket, what: str = "connection") -> None:
        self.sock = sock
        self.what = what  # for the message when QEMU closes it: "QMP", "qtest", ...
        self._buffer = b""

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline, or None if none came within `timeout`.
        A `timeout` of 0 still takes what already arrived: a peer whose unread messages fill
        the socket blocks in its write (QEMU's main loop, for qtest's IRQ messages)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionClosedError(
                    f"QEMU closed the {self.what} connection (did it exit?)"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode("ascii", errors="replace")


class LineClient(Closing):
    """A line-protocol session with a QEMU: its socket, reader, and why QEMU is gone."""

    what = "connection"  # the protocol's name in messages
    error: type[Exception] = RuntimeError  # what a failure of this protocol raises

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float = 60.0,
        alive: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.sock = sock
        self.timeout = timeout
        # Says why QEMU is gone (e.g. "exited with status 1"), or None while it runs.
        self.alive = alive
        self.reader = LineReader(sock, self.what)
        self.start()

    def start(self) -> None:
        """What a protocol does first, once connected (QMP: the greeting)."""

    def why_gone(self) -> str:
        return self.alive() or "QEMU is still running"

    def readline(self, timeout: float) -> str | None:
        """The next line, None after `timeout`; the protocol's error when QEMU closed it."""
        try:
            return self.reader.readline(timeout)
        except ConnectionClosedError as err:
            raise self.error(f"{err} ({self.why_gone()})") from None

    def close(self) -> None:
        self.sock.close()
