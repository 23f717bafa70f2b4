# SPDX-License-Identifier: MIT
"""Progress of long work: how far it is against the last complete run, the time left, and the
heartbeat a logged command (mmdebstrap) gets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.core import progress as core_progress
from harness.core.progress import LastTotals, duration, how_far
from harness.images import rootfs


def test_how_far_with_and_without_a_total() -> None:
    assert how_far(812, 1624, 240.0, "objects") == "812 of 1624 objects (50%), about 4m00s left"
    assert how_far(812, None, 240.0, "objects") == "812 objects"
    assert how_far(2000, 1624, 240.0, "objects") == "2000 objects"  # more than last time
    assert how_far(0, 1624, 0.0, "objects") == "0 of 1624 objects (0%)"
    assert duration(37.4) == "37s" and duration(245) == "4m05s"


def test_last_totals_are_kept_per_job(tmp_path: Path) -> None:
    totals = LastTotals(tmp_path / "progress" / "totals.json")
    assert totals.get("kernel-build:linux") is None
    totals.record("kernel-build:linux", 1555)
    totals.record("mmdebstrap:bookworm", 212)
    again = LastTotals(tmp_path / "progress" / "totals.json")
    assert (again.get("kernel-build:linux"), again.get("mmdebstrap:bookworm")) == (1555, 212)
    (tmp_path / "progress" / "totals.json").write_text("not json")
    assert again.get("kernel-build:linux") is None  # an estimate lost, nothing worse


def test_a_logged_command_reports_packages_and_steps_then_records_its_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(core_progress, "TERMINAL_INTERVAL", 0.2)
    script = 'echo "I: installing packages"; echo "Setting up a"; sleep 1; echo "Setting up b"'
    lines: list[str] = []
    log = tmp_path / "build.log"
    rootfs.run_logged(["sh", "-c", script], log, 30, "mmdebstrap of t", "hint",
                      watch=("mmdebstrap:t", lines.append))  # fmt: skip
    assert any(
        line.startswith("mmdebstrap of t: 1 packages set up") and "; installing packages" in line
        for line in lines
    ), lines
    totals = LastTotals(tmp_path / "cache" / "progress" / "totals.json")
    assert totals.get("mmdebstrap:t") == 2
    lines.clear()
    rootfs.run_logged(["sh", "-c", script], tmp_path / "again.log", 30, "mmdebstrap of t",
                      "hint", watch=("mmdebstrap:t", lines.append))  # fmt: skip
    assert any("1 of 2 packages set up (50%)" in line for line in lines), lines
