# SPDX-License-Identifier: MIT
"""`vfio-harness fuzz` on the debug kernel, as a user runs it: a short campaign executes, grows
coverage from an empty corpus and finds nothing in our normal build; the next campaign starts
from what the first kept; a deliberate fault (the WARN in VFIO_DEVICE_RESET) is found,
minimized, and its reproducer fails in a VM of the fault build and passes on the normal one.

The debug kernel is built as test_kernel_build.py's tests build it (CI, or
HARNESS_KERNEL_BUILD=1). The long campaigns are `tox -e fuzz` and `tox -e fuzz-faults`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.vm.test_kernel_build import wanted

pytestmark = pytest.mark.vm


def fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.cli", "fuzz", "--kernel", "debug", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)


def campaign(corpus: Path, reports: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = fuzz("--corpus", str(corpus), "--reports", str(reports), "--seed", "7", *args)
    print(done.stdout, done.stderr[-4000:])
    return done.returncode, json.loads((reports / "summary.json").read_text())


def test_a_short_campaign_runs_grows_coverage_and_resumes(tmp_path: Path) -> None:
    wanted()
    status, first = campaign(tmp_path / "corpus", tmp_path / "one", "--iterations", "120")
    assert status == 0, "our normal build gave findings"
    assert first["kcov"] is True and first["programs"] == 120 and first["findings"] == []
    assert first["accelerator"] in ("tcg", "kvm")
    assert first["pcs_before"] == 0 and first["pcs"] > 500 and first["corpus"] >= 10
    pcs = [point[2] for point in first["timeline"]]
    assert pcs[0] == 0 and pcs[-1] == first["pcs"] and pcs == sorted(pcs)
    assert first["ops"] > first["programs"] and first["ops_per_s_guest"] > 0
    status, second = campaign(tmp_path / "corpus", tmp_path / "two", "--iterations", "20")
    assert status == 0
    assert (second["pcs_before"], second["corpus_before"]) == (first["pcs"], first["corpus"])
    assert second["pcs"] >= first["pcs"]


def test_a_deliberate_fault_is_found_minimized_and_its_reproducer_tells_the_builds_apart(
    tmp_path: Path,
) -> None:
    wanted()
    status, summary = campaign(
        tmp_path / "corpus", tmp_path / "reports", "--module-faults", "4",
        "--max-findings", "1", "--duration", "300",
    )  # fmt: skip
    assert status == 1, "a new finding is exit status 1"
    [finding] = summary["findings"]
    assert finding["kind"] == "warning" and "hmdev_ioctl" in finding["headline"]
    assert finding["reproduced"] and finding["ops"] <= finding["original_ops"]
    program = json.loads(
        (tmp_path / "reports" / "findings" / finding["fingerprint"] / "finding.json").read_text()
    )["program"]
    assert [op["op"] for op in program][-1] == "reset" and len(program) == 2  # open, reset
    test = tmp_path / "reports" / "findings" / finding["fingerprint"]
    [reproducer] = test.glob("test_finding_*.py")
    faulty = fuzz("--module-faults", "4", "--replay", str(reproducer))
    assert faulty.returncode == 1, faulty.stdout + faulty.stderr[-2000:]
    assert "the kernel still reports WARNING" in faulty.stdout
    normal = fuzz("--replay", str(reproducer))
    assert normal.returncode == 0, normal.stdout + normal.stderr[-2000:]
    assert "1 passed" in normal.stdout
