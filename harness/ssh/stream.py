# SPDX-License-Identifier: MIT
"""A long-lived guest command driven line by line over its stdin and stdout.

    process = vm.ssh.start(["python3", "-m", "some.server"])
    process.send_line(b'{"run": 1}')
    reply = process.read_line(timeout=30)      # None once the command closed its stdout

stderr is drained all the time (a full SSH window would stall the guest) and its last lines
are kept for error messages. close() kills what is left of the command in the guest.
"""

from __future__ import annotations

import collections
import select
import time
from collections.abc import Callable

import paramiko

from harness.core.closing import Closing
from harness.ssh.errors import SshError

_CHUNK = 32768
_POLL = 0.05  # exit status and window updates do not wake the channel's pipe
STDERR_TAIL_LINES = 60


class StreamingCommand(Closing):
    """One running command on its own session channel. Not thread-safe."""

    def __init__(
        self, channel: paramiko.Channel, line: str, *, kill: Callable[[], object], where: str
    ) -> None:
        self.channel = channel
        self.line = line
        self.where = where
        self._kill = kill
        self._stdout = b""
        self._stderr_partial = b""
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._eof = False
        self._closed = False

    @property
    def stderr_tail(self) -> tuple[str, ...]:
        partial = self._stderr_partial.decode(errors="replace")
        return (*self._stderr, partial) if partial else tuple(self._stderr)

    def send_line(self, data: bytes) -> None:
        """Send `data` and a newline; SshError if the channel is gone."""
        try:
            self.channel.sendall(data + b"\n")
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise SshError(f"{self.where}: cannot write to {self.line!r}: {err}") from err

    def read_line(self, timeout: float) -> bytes | None:
        """The next stdout line without its newline; None at EOF; TimeoutError past timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self._stdout:
                line, self._stdout = self._stdout.split(b"\n", 1)
                return line
            if self._eof:
                return None
            self._pump()
            if b"\n" in self._stdout or self._eof:
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.where}: no line from {self.line!r} in {timeout:.0f} s")
            select.select([self.channel], [], [], min(remaining, _POLL))

    def exit_status(self, timeout: float) -> int | None:
        """The command's exit status, if it exits within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.channel.exit_status_ready():
            if self.channel.closed or time.monotonic() >= deadline:
                return None
            self._pump()
            self.channel.status_event.wait(_POLL)
        return self.channel.recv_exit_status()

    def _pump(self) -> None:
        try:
            while self.channel.recv_stderr_ready():
                self._add_stderr(self.channel.recv_stderr(_CHUNK))
            while self.channel.recv_ready():
                data = self.channel.recv(_CHUNK)
                if not data:
                    self._eof = True
                    break
                self._stdout += data
            # A closed channel or transport never becomes "ready" again: that is EOF too.
            if not self._eof and (self.channel.eof_received or self.channel.closed):
                self._eof = not self.channel.recv_ready()
        except (OSError, EOFError, paramiko.SSHException):
            self._eof = True

    def _add_stderr(self, data: bytes) -> None:
        *lines, self._stderr_partial = (self._stderr_partial + data).split(b"\n")
        self._stderr.extend(line.decode(errors="replace") for line in lines)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        exited = self.channel.exit_status_ready()
        transport = self.channel.get_transport()
        self.channel.close()
        if not exited and transport is not None and transport.is_active():
            # Closing the channel does not stop the command (see ssh_command.TAG_VARIABLE).
            self._kill()
