# SPDX-License-Identifier: MIT
"""`--shard K/N`: this run takes the K-th of N stable parts of the suite x kernel matrix, so N
hosts (or N jobs of a CI engine) split one run and `vfio-harness merge` joins their results.

An item's part is a hash of its node id (which names its kernel), so the split depends only
on the items, never on their order, the host or the Python: the same K/N gets the same items
everywhere, and the N parts are disjoint and cover the whole collection.
"""

from __future__ import annotations

import hashlib
import re

import pytest

_SHARD = re.compile(r"(\d+)/(\d+)")


def parse_shard(value: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N, as (K, N); ValueError otherwise."""
    match = _SHARD.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"--shard {value}: give K/N, e.g. 2/4")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise ValueError(f"--shard {value}: K must be between 1 and N")
    return k, n


def shard_of(nodeid: str, parts: int) -> int:
    """Which of `parts` parts (1-based) the item `nodeid` belongs to."""
    digest = hashlib.sha256(nodeid.encode()).digest()
    return int.from_bytes(digest[:8], "big") % parts + 1


class Shard:
    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n

    @pytest.hookimpl(trylast=True)  # after the kernel parametrization has named every item
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        kept = [item for item in items if shard_of(item.nodeid, self.n) == self.k]
        others = [item for item in items if shard_of(item.nodeid, self.n) != self.k]
        if others:
            config.hook.pytest_deselected(items=others)
        items[:] = kept

    def pytest_report_header(self) -> str:
        return f"vfio-harness: shard {self.k}/{self.n}"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # A part with nothing in it is a normal part of a small selection, not a failed job.
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
            session.exitstatus = pytest.ExitCode.OK


__all__ = ["Shard", "parse_shard", "shard_of"]
