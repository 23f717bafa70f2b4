# SPDX-License-Identifier: MIT
"""New kernel log lines and the taint mask, read where the tests run (a guest, or the host).

    reader = KmsgReader.open()          # positioned at the end: only what comes later
    ...
    lines = reader.drain()              # ["[   12.345678] WARNING: CPU: 0 PID: 1 at ...", ...]

/dev/kmsg gives one record per read(), "level,seq,usec,flags;message" followed by indented
key=value lines; every reader has its own position, so nothing else (dmesg, journald) is
disturbed. Lines are rendered like the console's ("[secs.usecs] message") so that
harness.vm.console parses both alike. Standard library only: this module runs in guests.
"""

from __future__ import annotations

import errno
import os

KMSG = "/dev/kmsg"
TAINTED = "/proc/sys/kernel/tainted"
_RECORD = 8192  # the kernel's maximum record is 1 KiB of text plus its dictionary
# Bits of /proc/sys/kernel/tainted and their letters (Documentation/admin-guide/tainted-kernels).
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"
# Loading an out-of-tree or unsigned module sets these: the vendor module does it by design.
MODULE_TAINTS = frozenset("POE")


def format_record(record: bytes) -> list[str]:
    """One /dev/kmsg record as console-style lines ([] for a malformed record).

    /dev/kmsg escapes a newline inside a message as "\\x0a" (lockdep prints some that way);
    the console shows a new line there, and so do we.
    """
    text = record.decode(errors="replace").split("\n", 1)[0]
    header, sep, message = text.partition(";")
    if not sep:
        return []
    parts = message.split("\\x0a")
    fields = header.split(",")
    try:
        usec = int(fields[2])
    except (IndexError, ValueError):
        return parts
    stamp = f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}]"
    return [f"{stamp} {part}" for part in parts if part.strip()] or [f"{stamp} "]


class KmsgReader:
    """A non-blocking reader of the kernel log from its position at open."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.lost = 0  # times records were overwritten before we read them

    @classmethod
    def open(cls, path: str = KMSG) -> KmsgReader:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(fd, 0, os.SEEK_END)
        return cls(fd)

    def drain(self) -> list[str]:
        lines: list[str] = []
        while True:
            try:
                record = os.read(self._fd, _RECORD)
            except BlockingIOError:
                return lines
            except OSError as err:
                if err.errno == errno.EPIPE:  # overrun: the next read resumes at the oldest
                    self.lost += 1
                    lines.append("[vfio-harness: kernel log records were lost (overrun)]")
                    continue
                raise
            if not record:
                return lines
            lines += format_record(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_taint(path: str = TAINTED) -> int:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def taint_letters(mask: int) -> str:
    """The kernel's letters for the bits of `mask` ("W" for 512), unknown bits as "#N"."""
    letters = []
    for bit in range(mask.bit_length()):
        if mask >> bit & 1:
            letters.append(TAINT_LETTERS[bit] if bit < len(TAINT_LETTERS) else f"#{bit}")
    return "".join(letters)
