# SPDX-License-Identifier: MIT
"""Which UAPI item exists in which kernel release.

The UAPI grows: structs gain trailing fields, new ioctls and flags appear. Every item added after
the oldest kernel we support (6.1) is recorded here with the release that added it, so the layout
test knows which header must have it, and callers can ask before they use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering


@total_ordering
@dataclass(frozen=True)
class KernelVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> KernelVersion:
        """Accept `uname -r` style strings: '6.12.117+deb13-amd64', '7.2.0-rc3', '6.1'."""
        match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
        if not match:
            raise ValueError(f"not a kernel version: {text!r}")
        return cls(int(match[1]), int(match[2]), int(match[3] or 0))

    @classmethod
    def from_code(cls, code: int) -> KernelVersion:
        """Decode LINUX_VERSION_CODE (patch saturates at 255 in the code)."""
        return cls(code >> 16, (code >> 8) & 0xFF, code & 0xFF)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, KernelVersion):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


OLDEST_SUPPORTED = KernelVersion(6, 1)


def kv(text: str) -> KernelVersion:
    return KernelVersion.parse(text)


@dataclass(frozen=True)
class Layout:
    """One layout of a C struct, valid for kernels in [since, until).

    When a struct grew, the newest layout carries the C name and the older ones a suffix
    (`vfio_device_info_v6_1`); the wrappers always send the newest, because the kernel accepts a
    larger argsz, and the layout test checks each header against the layout valid for it.
    """

    c_name: str
    struct: type
    since: KernelVersion = OLDEST_SUPPORTED
    until: KernelVersion | None = None

    def valid_for(self, version: KernelVersion) -> bool:
        return self.since <= version and (self.until is None or version < self.until)
