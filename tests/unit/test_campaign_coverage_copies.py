# SPDX-License-Identifier: MIT
"""A campaign's gcov copies are cumulative: each one holds the counters of the VMs running
then and of every VM replaced before it, and nothing replaced after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.campaign import coverage_copies
from harness.campaign.coverage_copies import GcovCopies
from harness.coverage.report import SET_FILE


class FakeCollector:
    """CoverageCollector without a guest: each collect writes a set whose counters name the
    VM it came from."""

    def __init__(self, directory: Path, worker: str) -> None:
        self.directory, self.worker, self.sets = directory, worker, 0

    def collect(self, guest: object, kernel: str, _notes: object) -> str:
        self.sets += 1
        where = self.directory / "raw" / f"{self.worker}-{self.sets}"
        where.mkdir(parents=True)
        (where / SET_FILE).write_text(json.dumps({"kernel": kernel, "vm": str(guest)}))
        return f"{kernel}: copied"


class Vm:
    def __init__(self, name: str | None) -> None:
        self.guest = name


def vms_in(copy: Path) -> list[str]:
    """The VMs whose sets a copy holds, as read_run would find them (through links)."""
    return sorted(json.loads((d / SET_FILE).read_text())["vm"] for d in (copy / "raw").glob("*"))


def test_each_copy_counts_the_vms_replaced_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coverage_copies, "CoverageCollector", FakeCollector)
    said: list[str] = []
    copies = GcovCopies(tmp_path / "coverage", "debug", None, said.append)
    copies.take(Vm("a"), 0, 60)  # type: ignore[arg-type]
    copies.retire(Vm("a"), 0)  # type: ignore[arg-type]
    copies.take(Vm("b"), 0, 120)  # type: ignore[arg-type]
    copies.take(Vm("x"), 1, 120)  # type: ignore[arg-type]
    copies.retire(Vm("b"), 0)  # type: ignore[arg-type]
    copies.take(Vm("c"), 0, 181)  # type: ignore[arg-type]
    at_60, at_120, at_181 = copies.copies()
    assert at_60.name == "at-000060" and vms_in(at_60) == ["a"]
    assert vms_in(at_120) == ["a", "b", "x"]  # a once: linked by both workers' takes
    assert vms_in(at_181) == ["a", "b", "c"]
    assert all(not p.is_absolute() for p in (x.readlink() for x in (at_181 / "raw").glob("r*")))
    assert "before its VM is replaced" in said[1] and said[-1].endswith(" of 2 replaced VM(s)")


def test_a_vm_without_a_guest_is_not_copied(tmp_path: Path) -> None:
    copies = GcovCopies(tmp_path, "debug", None, lambda _line: None)
    copies.take(Vm(None), 0, 60)  # type: ignore[arg-type]
    copies.retire(Vm(None), 0)  # type: ignore[arg-type]
    assert copies.copies() == [] and not (tmp_path / "retired").exists()
