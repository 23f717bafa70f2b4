# SPDX-License-Identifier: MIT
"""Lines from a socket with a deadline on every wait: QMP, qtest and serial consoles are all
line based, and a QEMU that died or hangs must not hang us."""

from __future__ import annotations

import select
import socket
import time


class ConnectionClosedError(EOFError):
    """The other end closed the connection (QEMU exited)."""


class LineReader:
    """Lines from a socket, with a deadline on every wait."""

    def __init__(self, sock: socket.socket, what: str = "connection") -> None:
        self.sock = sock
        self.what = what  # for the message when QEMU closes it: "QMP", "qtest", ...
        self._buffer = b""

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline, or None if none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
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
