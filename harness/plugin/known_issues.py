# SPDX-License-Identifier: MIT
"""Kernel bugs we know of and did not cause: a splat that matches one does not fail the test.

A test during which the kernel reports only known issues is an expected failure (xfailed),
with the issue named, so it is counted and visible but does not fail the run; anything else
in the same test still fails it. A matcher looks at the report's content (lock classes,
functions), never at which test ran, so it cannot hide a new bug that happens in the same
place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class Report(Protocol):
    """What a matcher sees of a finding (harness.plugin.health.Finding)."""

    @property
    def kind(self) -> str: ...
    @property
    def headline(self) -> str: ...
    @property
    def lines(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class KnownIssue:
    key: str
    summary: str
    matches: Callable[[Report], bool]

    def reason(self) -> str:
        return f"known kernel issue {self.key}: {self.summary}"


# lockdep's "Possible unsafe locking scenario" lines: "  lock(&iommu->lock);"
_SCENARIO_LOCK = re.compile(r"\block\((&[^)]+)\);")
_TYPE1_LOCKS = frozenset({"&iommu->lock", "&iommu->device_list_lock"})


def _lockdep_cycle_only_between(locks: frozenset[str]) -> Callable[[Report], bool]:
    def matches(report: Report) -> bool:
        if "possible circular locking dependency" not in report.headline:
            return False
        seen = {m.group(1) for line in report.lines for m in _SCENARIO_LOCK.finditer(line)}
        return seen == locks

    return matches


KNOWN_ISSUES: tuple[KnownIssue, ...] = (
    KnownIssue(
        key="type1-notify-unmap-lock-order",
        summary=(
            "vfio_iommu_type1 calls a driver's .dma_unmap with device_list_lock held (taken "
            "under iommu->lock), and the driver must then vfio_unpin_pages(), which takes "
            "iommu->lock: two concurrent unmaps of pinned ranges in one container can "
            "deadlock (lockdep: device_list_lock -> iommu->lock -> device_list_lock; seen "
            "on 6.12), and does with a device opening in the container meanwhile (its "
            "register_device takes the two the other way round; hung on 6.1 and 6.12 in "
            "tests/uapi/test_races.py)"
        ),
        matches=_lockdep_cycle_only_between(_TYPE1_LOCKS),
    ),
)


def known_issue_of(report: Report, known: Sequence[KnownIssue] = KNOWN_ISSUES) -> KnownIssue | None:
    return next((issue for issue in known if issue.matches(report)), None)


__all__ = ["KNOWN_ISSUES", "KnownIssue", "known_issue_of"]
