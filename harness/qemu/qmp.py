# SPDX-License-Identifier: MIT
"""One QMP client, standard library only: for the host's VMs (QEMU listens on a socket,
`QmpClient.connect`) and for the QEMU a guest runs (it connects to a socket we listen on:
`QmpClient(sock)`).

    with QmpClient.connect(run_dir / "qmp.sock") as qmp:
        qmp.status()                       # "running", "paused", "inmigrate", ...
        qmp.execute("query-pci")
        qmp.hmp("info pci")

QMP is JSON objects separated by newlines: a greeting {"QMP": ...}, then for each
{"execute": ...} either {"return": ...} or {"error": {"class", "desc"}}, with {"event": ...}
objects interleaved at any time (kept in `events`). Every wait has a deadline, and a failure
says whether QEMU is still running.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any, cast

from harness.qemu.lines import LineClient

CONNECT_POLL_S = 0.02


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


class QmpClient(LineClient):
    """A negotiated QMP session over `sock` (the greeting is read, capabilities sent)."""

    what = "QMP"
    error = QmpError

    def start(self) -> None:
        self.events: list[dict[str, Any]] = []
        greeting = self._next()
        if "QMP" not in greeting:
            raise QmpError(f"no QMP greeting: {greeting}")
        self.execute("qmp_capabilities")

    @classmethod
    def connect(cls, socket_path: Path, timeout: float = 10.0) -> QmpClient:
        """Connect to the QMP server QEMU is starting at `socket_path`, waiting for it."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if socket_path.exists():
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(str(socket_path))
                    return cls(sock)
                except (OSError, QmpError) as exc:
                    last_error = exc
                    sock.close()
            time.sleep(CONNECT_POLL_S)
        raise QmpError(
            f"no QMP monitor at {socket_path} after {timeout:.0f} s ({last_error or 'no socket'}); "
            "did QEMU start? see its console log"
        )

    def _next(self) -> dict[str, Any]:
        line = self.readline(self.timeout)
        if line is None:
            raise QmpError(f"QMP: no answer in {self.timeout:.0f} s ({self.why_gone()})")
        return parse_message(line)

    def execute(self, command: str, **arguments: Any) -> Any:
        """The command's "return" value; QmpError naming the command if it fails."""
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError as err:
            raise QmpError(f"QMP {command}: {err} ({self.why_gone()})") from None
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
        raise QmpError(f"QMP {command}: no reply in {self.timeout:.0f} s ({self.why_gone()})")

    def hmp(self, command_line: str) -> str:
        """A human monitor command's output (e.g. "info pci")."""
        output = self.execute("human-monitor-command", **{"command-line": command_line})
        return str(output)

    def status(self) -> str:
        """'running', 'paused', 'inmigrate', 'postmigrate', 'guest-panicked', ..."""
        return cast(str, self.execute("query-status")["status"])

    def stop(self) -> None:
        self.execute("stop")

    def cont(self) -> None:
        self.execute("cont")

    def save_state(self, target: Path, timeout: float = 60.0) -> None:
        """Stream the paused VM's state into `target` (restored later with -incoming)."""
        self.execute("migrate", uri=f"exec:cat > {target}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.execute("query-migrate").get("status")
            if state == "completed":
                return
            if state in ("failed", "cancelled"):
                raise QmpError(f"saving VM state to {target} ended {state}")
            time.sleep(0.02)
        raise QmpError(f"saving VM state to {target} took over {timeout:.0f} s")

    def wait_incoming(self, timeout: float = 30.0) -> None:
        """Wait until a restored VM has loaded its state (status leaves 'inmigrate')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status() != "inmigrate":
                return
            time.sleep(0.01)
        raise QmpError(f"restoring VM state took over {timeout:.0f} s")

    def quit(self) -> None:
        """Ask QEMU to exit; the socket closing under us is the expected answer."""
        with contextlib.suppress(QmpError, OSError):
            self.execute("quit")
