# SPDX-License-Identifier: MIT
"""The debug kernel built from Debian's linux-source-6.12 boots with iommufd and mdev, and
the suite runs on it through its recipe (`--kernel debug`).

They run in CI (HARNESS_REQUIRE_VM=1) and when asked (HARNESS_KERNEL_BUILD=1); elsewhere they
skip, since a cold build takes 9-15 minutes on 2 cores (later runs reuse the build directory
and ccache, and tox's suite-debug reuses what these built).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.images.build import build_image
from harness.kernel.custom import prepare_custom_kernel
from harness.kernel.recipe import build_recipe_kernel, find_kernel_recipe
from harness.plugin.policy import vm_required
from harness.vm.machine import VFIO_MODULES, modules_check_command
from harness.vm.saved_state import start_vm

pytestmark = pytest.mark.vm

OPT_IN_ENV = "HARNESS_KERNEL_BUILD"


def wanted() -> None:
    if os.environ.get(OPT_IN_ENV) != "1" and not vm_required():
        pytest.skip(f"building a kernel takes minutes: set {OPT_IN_ENV}=1")


def test_debug_kernel_boots_with_iommufd_and_mdev() -> None:
    wanted()
    build = build_recipe_kernel(find_kernel_recipe("debug"))  # the build suite-debug reuses
    assert build.release.startswith("6.12.")
    assert build.modules >= 1  # mtty and mdev
    bundle = prepare_custom_kernel(build.build_dir)
    with start_vm(build_image("bookworm"), kernel=bundle, fresh="boot") as vm:
        assert vm.run("uname -r").strip() == build.release
        assert vm.run("[ -c /dev/iommu ] && [ -c /dev/vfio/vfio ] && echo ok").strip() == "ok"
        vm.run("modprobe -a " + " ".join(VFIO_MODULES))
        assert vm.run(modules_check_command()).split() == []  # each loaded or built in
        log = vm.run("dmesg")
        assert "KernelAddressSanitizer initialized" in log
        assert "kmemleak: Kernel memory leak detector initialized" in log


def test_the_suite_runs_on_the_debug_recipe(tmp_path: Path) -> None:
    """`vfio-harness run --kernel debug`: the recipe's kernel built (or reused), our module
    built against it on the host, and guest tests named by the recipe pass in both modes."""
    wanted()
    checkout = Path(__file__).resolve().parents[2]
    reports = tmp_path / "reports"
    argv = ["run", "--kernel", "debug", "--reports", str(reports)]
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv, "--", "-k", "region_info_every_index"],
        cwd=checkout,
        check=False,
    )
    assert result.returncode == 0
    junit = (reports / "junit.xml").read_text(encoding="utf-8")
    for mode in ("type1", "iommufd"):
        assert f'name="test_region_info_every_index[{mode}-debug]"' in junit
    assert "<skipped" not in junit and "<failure" not in junit
