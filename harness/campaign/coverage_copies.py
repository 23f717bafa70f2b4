# SPDX-License-Identifier: MIT
"""A campaign's gcov counters over time: root/at-SECONDS/ per copy, each one the whole
campaign's coverage up to then, in harness.coverage's layout (read_run reads it).

A copy holds the counters of the VMs running then plus, linked, those of every VM replaced
before (root/retired/): the campaign starts a new VM after each lockdep report, and that VM's
counters start from zero. A VM that died took its counters with it; they are lost.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from harness.campaign.worker import FuzzVm
from harness.coverage.gcov import NotesDir
from harness.plugin.coverage import CoverageCollector

COPY_PREFIX = "at-"
RETIRED_DIR = "retired"


class GcovCopies:
    """The campaign's Snapshot hook for gcov (harness.campaign.campaign)."""

    def __init__(
        self, root: Path, kernel: str, notes: NotesDir | None, progress: Callable[[str], None]
    ) -> None:
        self.root = root
        self.kernel = kernel
        self.notes = notes
        self.progress = progress
        self._lock = threading.Lock()  # workers copy at the same time; linking must not race
        self._retired = CoverageCollector(root / RETIRED_DIR, "vm")

    def take(self, fvm: FuzzVm, worker: int, at: float) -> None:
        if fvm.guest is None:
            return
        copy = self.root / f"{COPY_PREFIX}{at:06.0f}"
        said = CoverageCollector(copy, f"w{worker}").collect(fvm.guest, self.kernel, self.notes)
        with self._lock:
            linked = self._link_retired(copy)
        kept = f"; with the counters of {linked} replaced VM(s)" if linked else ""
        self.progress(f"[worker {worker}] {said}{kept}")

    def retire(self, fvm: FuzzVm, worker: int) -> None:
        if fvm.guest is None:
            return
        with self._lock:  # the collector numbers its sets
            said = self._retired.collect(fvm.guest, self.kernel, self.notes)
        self.progress(f"[worker {worker}] before its VM is replaced: {said}")

    def _link_retired(self, copy: Path) -> int:
        """Link every retired VM's set into `copy`; the count of them."""
        retired = self.root / RETIRED_DIR / "raw"
        raw = copy / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        count = 0
        for set_dir in sorted(retired.glob("*")) if retired.is_dir() else []:
            link = raw / f"{RETIRED_DIR}-{set_dir.name}"
            if not link.exists():
                link.symlink_to(os.path.relpath(set_dir, raw))
            count += 1
        return count

    def copies(self) -> list[Path]:
        """Every copy so far, oldest first."""
        return sorted(self.root.glob(f"{COPY_PREFIX}*"))
