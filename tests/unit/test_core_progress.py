# SPDX-License-Identifier: MIT
"""Progress of long work: how far it is against the last complete run, the time left, and the
heartbeat a logged command (mmdebstrap) gets."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest

from harness.core import progress as core_progress
from harness.core.progress import (
    LastTotals,
    Transient,
    clear_status,
    duration,
    heartbeat_line,
    how_far,
    stderr_progress,
)
from harness.images import rootfs


def test_how_far_with_and_without_a_total() -> None:
    assert how_far(812, 1624, 240.0, "objects") == "812 of 1624 objects (50%), about 4m00s left"
    assert how_far(812, None, 240.0, "objects") == "812 objects"
    assert how_far(2000, 1624, 240.0, "objects") == "2000 objects"  # more than last time
    assert how_far(0, 1624, 0.0, "objects") == "0 of 1624 objects (0%)"
    assert duration(37.4) == "37s" and duration(245) == "4m05s"


def test_how_far_draws_a_bar_only_against_a_total() -> None:
    empty, half, full = "[" + "." * 20 + "]", "[" + "#" * 10 + "." * 10 + "]", "[" + "#" * 20 + "]"
    assert how_far(0, 1555, 0.0, "objects", bar=True) == f"{empty} 0 of 1555 objects (0%)"
    assert how_far(812, 1555, 240.0, "objects", bar=True) == (
        f"{half} 812 of 1555 objects (52%), about 3m40s left"
    )
    assert how_far(1555, 1555, 240.0, "objects", bar=True) == (
        f"{full} 1555 of 1555 objects (100%), about 0s left"
    )
    assert how_far(812, None, 240.0, "objects", bar=True) == "812 objects"
    assert how_far(2000, 1555, 240.0, "objects", bar=True) == "2000 objects"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fake_terminal(monkeypatch: pytest.MonkeyPatch) -> FakeTerminal:
    """stderr as a terminal 40 columns wide, with no status showing yet (set in the test
    itself: pytest's capture sets sys.stderr again between a fixture and its test)."""
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda: os.terminal_size((40, 24)))
    monkeypatch.setattr(core_progress._terminal, "status_showing", False)
    return fake


def test_on_a_terminal_a_transient_line_is_redrawn_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = fake_terminal(monkeypatch)
    stderr_progress("kernel build: make -j8")
    stderr_progress(Transient("[#...] 1 of 20"))
    stderr_progress(Transient("[##..] 2 of 20 " + "x" * 60))  # cut to the width, less one
    assert terminal.getvalue() == (
        "kernel build: make -j8\n"
        + "\r\x1b[K[#...] 1 of 20"
        + "\r\x1b[K"
        + "[##..] 2 of 20 ".ljust(39, "x")
    )
    stderr_progress("kernel build: make done")  # a normal line replaces the bar
    assert terminal.getvalue().endswith("x\r\x1b[Kkernel build: make done\n")
    stderr_progress("next")  # nothing left to clear
    assert terminal.getvalue().endswith("make done\nnext\n")


def test_clear_status_erases_only_a_bar_left_showing(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = fake_terminal(monkeypatch)
    clear_status()
    assert terminal.getvalue() == ""
    stderr_progress(Transient("[#...] 1 of 20"))
    clear_status()
    stderr_progress("error: make failed")
    assert terminal.getvalue() == "\r\x1b[K[#...] 1 of 20\r\x1b[Kerror: make failed\n"


def test_in_a_log_a_transient_line_is_a_plain_one(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(core_progress._terminal, "status_showing", False)
    line = heartbeat_line("kernel build", 812, 1555, 240.0, "objects", "4m00s elapsed")
    assert not isinstance(line, Transient)
    assert line == "kernel build: 812 of 1555 objects (52%), about 3m40s left, 4m00s elapsed"
    stderr_progress(line)
    stderr_progress(Transient("status"))
    clear_status()
    assert log.getvalue() == line + "\nstatus\n"


def test_on_a_terminal_a_heartbeat_is_a_transient_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_terminal(monkeypatch)
    line = heartbeat_line("kernel build", 812, 1555, 240.0, "objects", "4m00s elapsed")
    assert isinstance(line, Transient)
    assert line.startswith("kernel build: [##########..........] 812 of 1555 objects (52%)")


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
