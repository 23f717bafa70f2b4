# SPDX-License-Identifier: MIT
"""A per-VM watchdog process: if the process that launched QEMU dies, QEMU dies too.

The launcher keeps the write end of a pipe to the watchdog's stdin. A normal close() kills QEMU
itself and then writes RELEASE; any other end of the pipe (the launcher or its pytest worker was
SIGKILLed, crashed, or exited without closing the VM) means nobody will ever clean up, so the
watchdog kills QEMU's process group and deletes the run directory. It holds the run
directory's lock meanwhile (see run_dir.py), so a killed watchdog leaves a directory that the
next run's sweep recognises as stale.

This works whichever thread started QEMU (unlike PR_SET_PDEATHSIG, which fires when the forking
*thread* exits), and the watchdog runs in its own session, so a Ctrl-C in the terminal reaches
the harness, which closes its VMs in order, and not the watchdog. The script imports only the
standard library and runs with `python -I -S`: it starts in tens of milliseconds, in parallel
with QEMU.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

RELEASE = b"release"
KILL_WAIT_S = 10.0


class _TerminatedError(Exception):
    """SIGTERM: clean up now instead of waiting for the pipe."""


class Watchdog:
    """The launcher's handle: release() after a normal close, or let the pipe drop."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, qemu_pid: int, run_dir: Path, lock_fd: int) -> Watchdog:
        command = [sys.executable, "-I", "-S", str(Path(__file__).resolve())]
        command += [str(qemu_pid), str(run_dir), str(lock_fd)]
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(lock_fd,),
            start_new_session=True,
        )
        return cls(process)

    def release(self) -> None:
        """QEMU is gone and the run directory removed: tell the watchdog to stand down."""
        self._finish(RELEASE)

    def fire(self) -> None:
        """Make the watchdog kill QEMU and remove the run directory now, and wait for it."""
        self._finish(b"")

    def _finish(self, message: bytes) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                stdin.write(message)
            with contextlib.suppress(BrokenPipeError):
                stdin.close()
        try:
            self.process.wait(timeout=KILL_WAIT_S + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _alive(pidfd: int) -> bool:
    readable, _, _ = select.select([pidfd], [], [], 0)
    return not readable


def _kill_and_wait(pid: int, pidfd: int) -> None:
    if not _alive(pidfd):
        return
    # The group first, while its leader (still alive, so the pgid is still its) names it:
    # QEMU's helpers, like the `cat` of an exec: migration, are in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    select.select([pidfd], [], [], KILL_WAIT_S)


def _on_sigterm(_signo: int, _frame: object) -> None:
    raise _TerminatedError


def main(argv: list[str]) -> int:
    pid, run_dir, _lock_fd = int(argv[0]), Path(argv[1]), int(argv[2])
    # The harness handles Ctrl-C and hang-ups by closing its VMs; a SIGTERM to us means "now".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        pidfd = None  # QEMU already exited; still remove the directory if the launcher dies
    message = b""
    with contextlib.suppress(OSError, _TerminatedError):
        while chunk := sys.stdin.buffer.read(64):
            message += chunk
    if message == RELEASE:
        return 0
    if pidfd is not None:
        _kill_and_wait(pid, pidfd)
    shutil.rmtree(run_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
