# SPDX-License-Identifier: MIT
"""Guest tests through the plugin, as users run them: tests/vm/data/sample_suite run by an
inner `python -m pytest` in guests, with per-test outcomes on the host (junitxml), kernel
health attributed to the test that caused it, -k, xdist, and a guest panic survived."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.plugin.policy import vm_unavailable

pytestmark = pytest.mark.vm

RECIPES = Path(__file__).resolve().parents[2] / "vm_images"
SAMPLE = Path(__file__).parent / "data" / "sample_suite"


def _inner(tmp_path: Path, *args: str) -> tuple[dict[str, str], dict[str, ET.Element], str]:
    """Run the sample suite; (outcome per test name, testcase element per name, output)."""
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")
    if os.geteuid() != 0:
        vm_unavailable("building the vendor module in a Debian chroot needs root")
    shutil.copytree(SAMPLE, tmp_path / "sample_suite", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "pytest.ini").write_text("[pytest]\nguest_suites = sample_suite\n")
    junit = tmp_path / "junit.xml"
    # The inner pytest runs in a scratch directory, and tox installs the package as a wheel.
    kmod = RECIPES.parent / "kmod"
    env = {**os.environ, "HARNESS_VM_IMAGES": str(RECIPES), "HARNESS_KMOD_SRC": str(kmod)}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA"]
    command += ["--junitxml", str(junit), "--mdev-type", "sample-type", *args]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = run.stdout + run.stderr
    assert junit.is_file(), output
    outcomes, cases = {}, {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        cases[name] = case
        outcomes[name] = next(
            (c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed"
        )
    return outcomes, cases, output


def _properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def test_outcomes_health_and_fixture_order(tmp_path: Path) -> None:
    outcomes, cases, output = _inner(tmp_path, "-k", "not panic", "--kernel", "bookworm")
    assert outcomes == {
        "test_pass[bookworm]": "passed",
        "test_fail[bookworm]": "failure",
        "test_skip[bookworm]": "skipped",
        "test_environment[bookworm]": "passed",
        "test_warn_in_kernel_log[bookworm]": "failure",
        "test_order_first[bookworm]": "passed",
        "test_order_second[bookworm]": "passed",
        "test_order_check[bookworm]": "passed",
    }, output
    warned = cases["test_warn_in_kernel_log[bookworm]"]
    failure = warned.find("failure")
    assert failure is not None
    assert "WARNING: CPU: 0 PID: 1 at drivers/vfio/sample.c:42" in (failure.text or ""), output
    assert "fingerprint" in (failure.text or "")
    properties = _properties(warned)
    assert properties["kernel"].startswith("6.1."), properties
    assert properties["kernel_splat"].startswith("warning "), properties
    assert "accelerator" in _properties(cases["test_pass[bookworm]"])
    # The failing test's traceback names the host's file, not the guest's copy.
    assert "/opt/vfio-harness-suites" not in output
    assert "deliberately wrong" in output


def test_selection_and_two_workers(tmp_path: Path) -> None:
    outcomes, _, output = _inner(
        tmp_path, "-n", "2", "-k", "basic and not warn", "--kernel", "bookworm"
    )
    assert outcomes == {
        "test_pass[bookworm]": "passed",
        "test_fail[bookworm]": "failure",
        "test_skip[bookworm]": "skipped",
        "test_environment[bookworm]": "passed",
    }, output
    assert "2 workers" in output or "gw1" in output, output


def test_a_guest_panic_fails_its_test_and_the_run_goes_on(tmp_path: Path) -> None:
    outcomes, cases, output = _inner(tmp_path, "-k", "panic", "--kernel", "bookworm")
    assert outcomes == {
        "test_panic[bookworm]": "failure",
        "test_after_panic[bookworm]": "passed",  # on a new VM, with the module loaded again
    }, output
    failure = cases["test_panic[bookworm]"].find("failure")
    assert failure is not None
    text = failure.text or ""
    assert "Kernel panic - not syncing" in text, output
    assert "PANIC on the console [fingerprint" in text
