# SPDX-License-Identifier: MIT
"""A minimal QMP client for L1's QEMU, standard library only (the host's harness.vm.qmp needs
the qemu.qmp package, which the guest does not have).

QMP is JSON objects separated by newlines: a greeting {"QMP": ...}, then for each
{"execute": ...} either {"return": ...} or {"error": {"class", "desc"}}, with {"event": ...}
objects interleaved at any time (kept in `events`).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from harness.core.closing import Closing
from harness.nested.qtest import LineReader


class QmpError(RuntimeError):
    """A QMP command failed, or QEMU stopped answering."""


def parse_message(line: str) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        raise QmpError(f"QMP sent something that is not JSON: {line[:80]!r}") from None
    if not isinstance(message, dict):
        raise QmpError(f"QMP sent a non-object: {line[:80]!r}")
    return message


class QmpLite(Closing):
    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float = 60.0,
        alive: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.sock = sock
        self.timeout = timeout
        self.alive = alive
        self.reader = LineReader(sock)
        self.events: list[dict[str, Any]] = []
        greeting = self._next()
        if "QMP" not in greeting:
            raise QmpError(f"no QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _next(self) -> dict[str, Any]:
        line = self.reader.readline(self.timeout)
        if line is None:
            raise QmpError(f"QMP: no answer in {self.timeout:.0f} s ({self._why()})")
        return parse_message(line)

    def _why(self) -> str:
        return self.alive() or "QEMU is still running"

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as err:
            raise QmpError(f"QMP {command}: {err} ({self._why()})") from None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self._next()
            if "event" in message:
                self.events.append(message)
                continue
            if "error" in message:
                error = message["error"]
                raise QmpError(f"QMP {command} failed: {error.get('class')}: {error.get('desc')}")
            if "return" in message:
                return message["return"]
        raise QmpError(f"QMP {command}: no reply in {self.timeout:.0f} s ({self._why()})")

    def hmp(self, command_line: str) -> str:
        """A human monitor command's output (e.g. "info pci")."""
        output = self.execute("human-monitor-command", **{"command-line": command_line})
        return str(output)

    def close(self) -> None:
        self.sock.close()
