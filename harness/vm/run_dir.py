# SPDX-License-Identifier: MIT
"""Per-VM run directories (overlay, console log, sockets, key), locked while in use.

Each run directory holds a `lock` file that is flock()ed for as long as its VM may run: by the
launching process and by the VM's watchdog, which share the open file. A directory whose lock
nobody holds belongs to a run that died without cleaning up (its watchdog was killed too);
`sweep_stale_runs()` kills any QEMU still recorded there and deletes it, so even the rarest
crash leaks nothing past the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = "lock"
QEMU_PIDFILE = "qemu.pid"
# A directory may briefly exist before its lock file does; only older ones are stale.
UNLOCKED_GRACE_S = 60.0


@dataclass
class RunDir:
    """A fresh, locked run directory; release() unlocks it, remove() also deletes it."""

    path: Path
    lock_fd: int | None = field(default=None, repr=False)

    @classmethod
    def create(cls, parent: Path, prefix: str = "vm-") -> RunDir:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # new and ours: cannot block
        return cls(path, fd)

    @property
    def pidfile(self) -> Path:
        return self.path / QEMU_PIDFILE

    def release(self) -> None:
        if self.lock_fd is not None:
            fd, self.lock_fd = self.lock_fd, None
            os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.release()


def lock_is_free(lock: Path) -> bool:
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _kill_recorded_qemu(run_dir: Path) -> None:
    """Kill the QEMU whose pidfile is in `run_dir`, if that pid is still that QEMU."""
    try:
        pid = int((run_dir / QEMU_PIDFILE).read_text().strip())
        cmdline = _cmdline(pid)
    except (OSError, ValueError):
        return
    # The pid may have been reused: only a process naming this run directory is ours.
    if str(run_dir).encode() in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    """/proc/PID/cmdline; a process caught inside execve() briefly shows an empty one."""
    for _ in range(20):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline:
            break
        time.sleep(0.05)
    return cmdline


def sweep_stale_runs(parent: Path, *, now: float | None = None) -> list[Path]:
    """Delete run directories nobody holds (killing their QEMU); return what was removed."""
    removed: list[Path] = []
    current = time.time() if now is None else now
    if not parent.is_dir():
        return removed
    for run_dir in sorted(parent.iterdir()):
        if not run_dir.is_dir():
            continue
        lock = run_dir / LOCK_NAME
        if lock.exists():
            if not lock_is_free(lock):
                continue
        else:
            try:
                age = current - run_dir.stat().st_mtime
            except FileNotFoundError:
                continue
            if age < UNLOCKED_GRACE_S:
                continue
        _kill_recorded_qemu(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir)
    return removed
