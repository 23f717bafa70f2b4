# SPDX-License-Identifier: MIT
"""The installed package runs the suite with no checkout: a clean venv, the wheel built from
the sdist, and `vfio-harness run` from a directory that holds nothing of ours. The suite, our
driver's source and the image recipes must come from the package itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.resources import RESOURCES
from tests.packaging import Built, PackagingError, download_wheelhouse
from tests.vm.suite_junit import read_suite_junit

pytestmark = pytest.mark.vm

RUN_TIMEOUT_S = 1200.0
SELECTION = "test_info"  # one file of the suite, both IOMMU modes: enough to show it runs


def _glibc() -> tuple[int, int]:
    version = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.17"
    major, minor = version.split()[1].split(".")[:2]
    return int(major), int(minor)


def _without_our_overrides() -> dict[str, str]:
    """This environment, minus what would point the package at the checkout."""
    overrides = {resource.env for resource in RESOURCES.values()} | {"PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in overrides}


def test_the_installed_wheel_runs_the_suite_outside_the_checkout(
    package: Built, tmp_path: Path
) -> None:
    try:
        wheels = download_wheelhouse(
            package.wheel, tmp_path / "wheels", python=sys.version_info[:2], glibc=_glibc()
        )
    except PackagingError as err:
        pytest.fail(str(err), pytrace=False)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = [str(venv / "bin/pip"), "install", "--quiet", "--no-index"]
    subprocess.run([*install, "--find-links", str(tmp_path / "wheels"), package.wheel.name],
                   cwd=tmp_path / "wheels", check=True)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _without_our_overrides()
    command = str(venv / "bin/vfio-harness")

    paths = subprocess.run(
        [command, "paths"], cwd=elsewhere, env=env, capture_output=True, text=True, check=True
    )
    for name in RESOURCES:
        line = next(line for line in paths.stdout.splitlines() if line.startswith(name))
        assert line.endswith("(package)"), f"{name} not from the installed package: {line}"
        assert str(venv) in line

    reports = elsewhere / "reports"
    run = subprocess.run(
        [command, "run", "--reports", str(reports), "--", "-k", SELECTION],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    shown = f"{run.stdout[-4000:]}\n{run.stderr[-3000:]}"
    assert run.returncode == 0, shown
    result = read_suite_junit((reports / "junit.xml").read_text())
    print(f"installed from {len(wheels)} wheels; {SELECTION}: {result.summary()}")
    assert list(result.outcomes) == [f"tests.uapi.{SELECTION}"], shown
    assert result.count("passed") >= 10, shown
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reports"], "build output left in cwd"
