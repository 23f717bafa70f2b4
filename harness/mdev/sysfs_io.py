# SPDX-License-Identifier: MIT
"""Attribute I/O: the one seam between the mdev model and the kernel.

The model reads and writes sysfs attributes only through a `SysfsIO`. The real one talks to the
kernel; the fake one (harness.mdev.fake) reacts to writes the way the kernel does, because a
plain directory cannot.

Contract for implementations: failures raise OSError carrying the kernel's errno; the model turns
it into an MdevError that names the operation.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

# A sysfs show() fills at most one page; reading in page-sized chunks gets it in one read().
_READ_CHUNK = 4096


class SysfsIO(Protocol):
    def read_text(self, path: Path) -> str:
        """The attribute's whole content, as the kernel's show() produced it (newline kept)."""
        ...

    def write_text(self, path: Path, text: str) -> None:
        """Hand `text` to the attribute's store() in one write()."""
        ...


class RealSysfsIO:
    """Reads and writes real sysfs attributes with plain syscalls.

    - One write() per call: kernfs hands every write() to store() on its own, so splitting the
      data (as a buffered file object may do) would send the kernel two partial UUIDs.
    - No O_CREAT: a missing attribute must fail with ENOENT, not leave a regular file behind
      (which, under a rooted tree, would make a typo look like success).
    - The bytes are exactly `text`: no newline is added. create_store() accepts 36 or 37 bytes
      and remove_store()'s kstrtoul() accepts "1" or "1\\n"; the canonical form is sent.
    """

    def read_text(self, path: Path) -> str:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            while chunk := os.read(fd, _READ_CHUNK):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", errors="surrogateescape")

    def write_text(self, path: Path, text: str) -> None:
        data = text.encode("utf-8", errors="surrogateescape")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            # store() returns either the full count or an errno; a short count means the
            # attribute consumed part of the request, which no mdev attribute does.
            raise OSError(errno.EIO, f"short write: {written} of {len(data)} bytes", str(path))
