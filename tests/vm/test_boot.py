# SPDX-License-Identifier: MIT
"""Each supported kernel boots, answers SSH with the VFIO modules loaded, and leaves nothing."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from harness.plugin.policy import vm_unavailable
from harness.vm.images import build_image
from harness.vm.machine import VFIO_MODULES, boot

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("name", ["bookworm", "trixie", "sid"])
def test_boot_run_command_and_tear_down(name: str) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")
    image = build_image(name)
    with boot(image) as vm:
        assert vm.run("uname -r").strip() == image.kernel_release
        loaded = vm.run("cat /proc/modules | cut -d' ' -f1").split()
        assert set(VFIO_MODULES) <= set(loaded)
        print(
            f"{name}: {image.kernel_release} ready in {vm.times.boot_to_ready_s:.1f} s "
            f"[{vm.accelerator.name}: {vm.accelerator.reason}]"
        )
        process, run_dir = vm.process, vm.run_dir
    assert process.poll() is not None, "QEMU still running after close()"
    assert not run_dir.exists(), "the run directory (overlay, sockets) was left behind"
    leftovers = subprocess.run(
        ["pgrep", "-f", f"vfio-harness-{name}"], capture_output=True, text=True, check=False
    ).stdout
    assert not leftovers, f"QEMU processes left behind: {leftovers}"
