# SPDX-License-Identifier: MIT
"""A debug kernel's own checkers, seen from where the tests run: kmemleak and lockdep.

    leaks = Kmemleak.find()             # None unless the kernel has CONFIG_DEBUG_KMEMLEAK
    leaks.clear()                       # forget what was allocated before the suite
    ...
    report = leaks.scan()               # the leak reports since the last scan, then forgotten

    lockdep_live()                      # False once lockdep has reported and switched off

kmemleak only reports an object when a scan finds no reference to it and it is older than
five seconds, so a scan after each test module (not each test) is what the suite can afford;
the report's backtraces say who allocated. Lockdep switches itself off after its first report,
so a kernel that has reported once no longer checks locking: whoever runs the tests must
replace it. Standard library only: this module runs in guests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

DEBUGFS = "/sys/kernel/debug"
KMEMLEAK = f"{DEBUGFS}/kmemleak"
LOCKDEP_STATS = "/proc/lockdep_stats"
_REPORT_START = "unreferenced object "


class Kmemleak:
    """The kmemleak debugfs file: scan on demand, report, forget."""

    def __init__(self, path: str = KMEMLEAK) -> None:
        self.path = path

    @classmethod
    def find(cls, path: str = KMEMLEAK) -> Kmemleak | None:
        """kmemleak, with debugfs mounted if it was not; None if the kernel lacks it."""
        if not os.path.exists(path):
            mount_debugfs()
        if not os.path.exists(path):
            return None
        return cls(path)

    def _command(self, command: str) -> None:
        with open(self.path, "w", encoding="ascii") as handle:
            handle.write(command)

    def clear(self) -> None:
        """Objects allocated so far are never reported (the boot's and the runner's own)."""
        self._command("clear")

    def scan(self) -> list[str]:
        """Scan now; the reports found, one line a list item; then forget them."""
        self._command("scan")
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            lines = [line.rstrip("\n") for line in handle]
        self.clear()
        return lines

    def settle_and_scan(self, age: float) -> list[str]:
        """The reports on what was leaked just before: an object whose contents changed
        since the scan before (a new one that was written) is only reported by the scan
        after, and only once it is `age` old. So: scan, wait out the rest of `age`, scan."""
        started = time.monotonic()
        first = self.scan()
        time.sleep(max(age - (time.monotonic() - started), 0.0))
        return first + self.scan()


def mount_debugfs() -> None:
    """Mount debugfs where the kernel's own tools expect it, unless it is there already."""
    if os.path.ismount(DEBUGFS) or not os.path.isdir(DEBUGFS):
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["mount", "-t", "debugfs", "debugfs", DEBUGFS],
            check=False,
            capture_output=True,
            timeout=10,
        )


def split_reports(lines: list[str]) -> list[list[str]]:
    """kmemleak's file as one list of lines per unreferenced object."""
    reports: list[list[str]] = []
    for line in lines:
        if line.startswith(_REPORT_START):
            reports.append([line])
        elif reports and line.strip():
            reports[-1].append(line)
    return reports


def lockdep_live(path: str = LOCKDEP_STATS) -> bool | None:
    """Is lockdep still checking? None if the kernel has no lockdep."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() == "debug_locks":
                    return value.strip() != "0"
    except OSError:
        return None
    return None


__all__ = ["DEBUGFS", "Kmemleak", "lockdep_live", "mount_debugfs", "split_reports"]
