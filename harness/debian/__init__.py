# SPDX-License-Identifier: MIT
"""Debian archive access: the host's mirror, a private apt state, and unpacked packages.

The mirror is never hard-coded: it comes from the host's apt configuration, or from
$HARNESS_DEBIAN_MIRROR (or a `mirror=` argument) when set.
"""

from harness.debian.archive import AptArchive, AptError
from harness.debian.mirror import (
    MIRROR_ENV,
    DebianMirror,
    MirrorNotFoundError,
    debian_mirror,
    find_debian_mirror,
)
from harness.debian.packages import PackageUnpackError, unpacked_package

__all__ = [
    "MIRROR_ENV",
    "AptArchive",
    "AptError",
    "DebianMirror",
    "MirrorNotFoundError",
    "PackageUnpackError",
    "debian_mirror",
    "find_debian_mirror",
    "unpacked_package",
]
