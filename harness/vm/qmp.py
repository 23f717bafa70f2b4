# SPDX-License-Identifier: MIT
"""A small synchronous QMP client over QEMU's monitor socket, built on `qemu.qmp`.

The launcher needs only a handful of commands (status, stop/cont, migrate to a file for saved
states, quit); this wraps them with timeouts and errors that name the command.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, cast

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.core.closing import Closing


class QmpCommandError(RuntimeError):
    """A QMP command failed or QEMU stopped answering."""


class QmpClient(Closing):
    """A connected QMP session; `connect()` waits for QEMU to create the socket."""

    def __init__(self, monitor: QEMUMonitorProtocol, socket_path: Path) -> None:
        self._monitor: QEMUMonitorProtocol | None = monitor
        self.socket_path = socket_path

    @classmethod
    def connect(cls, socket_path: Path, timeout: float = 10.0) -> QmpClient:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if socket_path.exists():
                monitor = QEMUMonitorProtocol(str(socket_path))
                try:
                    monitor.connect(negotiate=True)
                    return cls(monitor, socket_path)
                except (OSError, QMPError) as exc:
                    last_error = exc
                    monitor.close()
            time.sleep(0.02)
        raise QmpCommandError(
            f"no QMP monitor at {socket_path} after {timeout:.0f} s ({last_error or 'no socket'}); "
            "did QEMU start? see its console log"
        )

    @property
    def monitor(self) -> QEMUMonitorProtocol:
        if self._monitor is None:
            raise QmpCommandError("QMP session is closed")
        return self._monitor

    def command(self, name: str, **arguments: Any) -> Any:
        try:
            return self.monitor.cmd(name, **arguments)
        except (OSError, QMPError) as exc:
            raise QmpCommandError(f"QMP {name}: {exc}") from None

    def status(self) -> str:
        """'running', 'paused', 'inmigrate', 'postmigrate', 'guest-panicked', ..."""
        return cast(str, self.command("query-status")["status"])

    def stop(self) -> None:
        self.command("stop")

    def cont(self) -> None:
        self.command("cont")

    def save_state(self, target: Path, timeout: float = 60.0) -> None:
        """Stream the paused VM's state into `target` (restored later with -incoming)."""
        self.command("migrate", uri=f"exec:cat > {target}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.command("query-migrate").get("status")
            if state == "completed":
                return
            if state in ("failed", "cancelled"):
                raise QmpCommandError(f"saving VM state to {target} ended {state}")
            time.sleep(0.02)
        raise QmpCommandError(f"saving VM state to {target} took over {timeout:.0f} s")

    def wait_incoming(self, timeout: float = 30.0) -> None:
        """Wait until a restored VM has loaded its state (status leaves 'inmigrate')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status() != "inmigrate":
                return
            time.sleep(0.01)
        raise QmpCommandError(f"restoring VM state took over {timeout:.0f} s")

    def quit(self) -> None:
        """Ask QEMU to exit; the socket closing under us is the expected answer."""
        with contextlib.suppress(OSError, QMPError, EOFError):
            self.monitor.cmd("quit")

    def close(self) -> None:
        if self._monitor is not None:
            monitor, self._monitor = self._monitor, None
            # After `quit` QEMU may already be gone: the disconnect then reports EOF, harmlessly.
            with contextlib.suppress(OSError, QMPError, EOFError):
                monitor.close()
