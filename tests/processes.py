# SPDX-License-Identifier: MIT
"""Processes in tests of what Ctrl-C, kill and crashes leave behind: started as a terminal
would start them, and waited for by their exit, not by a fixed sleep.

A non-interactive shell starts background jobs with SIGINT ignored (POSIX), and CI runners
and the fresh-machine rehearsal start us that way. An ignored SIGINT stays ignored across
exec, and Python then installs no KeyboardInterrupt handler, so a "Ctrl-C" sent to such a
child does nothing at all. A terminal's foreground job has SIGINT at its default:
`as_foreground_job` restores that in the child before it execs.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Sequence
from pathlib import Path

_RESTORE_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)
# Only so that a broken run cannot hang CI: every wait below returns at the event itself.
SAFETY_TIMEOUT_S = 300.0


def as_foreground_job(command: Sequence[str]) -> list[str]:
    """`command`, started with SIGINT at its default action whatever ours is."""
    return [sys.executable, "-c", _RESTORE_SIGINT, *command]


def alive(pid: int) -> bool:
    """Running (a zombie is not: it has exited and only waits to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_exited(pid: int, timeout: float = SAFETY_TIMEOUT_S) -> bool:
    """Block until `pid` (any process, not only a child) exits; False on the safety timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(pidfd)


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (e.g. a run directory's path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                found.append(int(entry.name))
    return found
