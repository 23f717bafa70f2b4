# SPDX-License-Identifier: MIT
"""Expected errnos that depend on the kernel version: one table, keyed by the release.

Only what the kernel changed between releases lives here; errnos that every supported kernel
agrees on are written in the tests. Each entry lists (first release, errno) pairs in order; a
boundary marked "~" is the upstream release we believe made the change, confirmed only on the
Debian kernels we run (6.1 bookworm, 6.12 trixie, 7.2 sid).
"""

from __future__ import annotations

import errno
import os

from harness.uapi.raw.versions import KernelVersion, kv

_TABLE: dict[str, tuple[tuple[KernelVersion, int], ...]] = {
    # VFIO_IOMMU_MAP_DMA / UNMAP_DMA whose iova + size wraps past 2**64: the checks became
    # check_add_overflow() returning EOVERFLOW (~6.18, "handle DMA map/unmap up to the
    # addressable limit").
    "map_dma_wraparound": ((kv("6.1"), errno.EINVAL), (kv("6.18"), errno.EOVERFLOW)),
    "unmap_dma_wraparound": ((kv("6.1"), errno.EINVAL), (kv("6.18"), errno.EOVERFLOW)),
    # VFIO_GROUP_SET_CONTAINER with an fd that is neither a container nor an iommufd: the
    # group code learned iommufd and answers EBADFD since ~6.2.
    "set_container_not_a_container": ((kv("6.1"), errno.EINVAL), (kv("6.2"), errno.EBADFD)),
}


def expected_errno(name: str, release: str | None = None) -> int:
    """The errno `name` fails with on `release` (default: the running kernel)."""
    version = KernelVersion.parse(release if release is not None else os.uname().release)
    answer: int | None = None
    for since, err in _TABLE[name]:
        if version >= since:
            answer = err
    if answer is None:
        raise LookupError(f"{name}: no expected errno for kernel {version}")
    return answer


def names() -> list[str]:
    return sorted(_TABLE)
