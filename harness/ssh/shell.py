# SPDX-License-Identifier: MIT
"""An interactive shell over an SshSession: the guest's PTY wired to this terminal.

The local terminal is put in raw mode (keys, Ctrl-C included, go to the guest) and restored on
the way out whatever happens; window size changes follow SIGWINCH.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import termios
import tty
from collections.abc import Iterator

import paramiko

from harness.ssh.session import SshSession


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def interactive_shell(session: SshSession, term: str | None = None) -> int:
    """Run the guest user's login shell on this terminal; return its exit status."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    size = shutil.get_terminal_size()
    channel = session.open_channel()
    channel.get_pty(term=term or os.environ.get("TERM", "vt100"), width=size.columns,
                    height=size.lines)  # fmt: skip
    channel.invoke_shell()

    def resize(_signo: int, _frame: object) -> None:
        now = shutil.get_terminal_size()
        with contextlib.suppress(paramiko.SSHException):
            channel.resize_pty(width=now.columns, height=now.lines)

    previous = signal.signal(signal.SIGWINCH, resize)
    try:
        with _raw_terminal(stdin_fd):
            _pump(channel, stdin_fd, stdout_fd)
    finally:
        signal.signal(signal.SIGWINCH, previous)
    status = channel.recv_exit_status()
    channel.close()
    return status


def _pump(channel: paramiko.Channel, stdin_fd: int, stdout_fd: int) -> None:
    sources: list[paramiko.Channel | int] = [channel, stdin_fd]
    while True:
        readable: list[paramiko.Channel | int] = []
        with contextlib.suppress(InterruptedError):  # SIGWINCH
            readable, _, _ = select.select(sources, [], [])
        if channel in readable:
            data = channel.recv(65536)
            if not data:
                return
            os.write(stdout_fd, data)
        if stdin_fd in readable:
            keys = os.read(stdin_fd, 4096)
            if not keys:
                channel.shutdown_write()
                sources.remove(stdin_fd)
                continue
            channel.sendall(keys)
