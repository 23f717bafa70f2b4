# SPDX-License-Identifier: MIT
"""`--coverage-dir DIR`: before a VM is closed (retired, or at the end), its gcov counters go
to DIR/raw/<worker>-<n>/counters/, with set.json naming the kernel and where the notes of the
module it ran are (harness.coverage.report reads them)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.coverage.gcov import NotesDir, keep_notes
from harness.coverage.guest import fetch_counters
from harness.coverage.report import write_set
from harness.kmod.builder import GCOV_COMPILED_IN, GCOV_NOTES_DIR
from harness.plugin.guest_vm import GuestVm


def module_notes(module: Path, source: Path) -> NotesDir | None:
    """The notes a module build kept beside the .ko (kmod.builder), if it was built for gcov."""
    notes = module.parent / GCOV_NOTES_DIR
    compiled_in = notes / GCOV_COMPILED_IN
    if not compiled_in.is_file():
        return None
    return NotesDir(notes, compiled_in.read_text(encoding="utf-8").strip(), source)


PROBE_TIMEOUT_S = 10.0


class CoverageCollector:
    def __init__(self, directory: Path, worker: str) -> None:
        self.directory = directory
        self.worker = worker
        self._sets = 0

    def collect(self, guest: GuestVm, kernel: str, notes: NotesDir | None) -> str:
        """Copy `guest`'s counters (and its module's notes); a line for the progress output.
        Nothing here may end the run: a failure is that line."""
        self._sets += 1
        where = self.directory / "raw" / f"{self.worker}-{os.getpid()}-{self._sets}"
        try:
            if not guest.answers(guest.scaled(PROBE_TIMEOUT_S)):
                return f"{kernel}: coverage: the guest does not answer; its counters are lost"
            count = fetch_counters(guest.vm.ssh, where / "counters", guest.scaled(1.0))
            modules = [keep_notes(notes, where / "notes")] if notes and count else []
            write_set(where, kernel, count, modules)
        except Exception as err:  # SSH, tar, disk: the suite's results stand regardless
            return f"{kernel}: coverage: counters not copied: {err}"
        return f"{kernel}: coverage: {count} counter files copied"
