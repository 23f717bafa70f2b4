# SPDX-License-Identifier: MIT
"""Each supported kernel boots, answers SSH with the VFIO modules loaded, and leaves nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.images.build import build_image
from harness.plugin.policy import vm_unavailable
from harness.vm.machine import VFIO_MODULES, boot

pytestmark = pytest.mark.vm


@pytest.mark.parametrize("name", ["bookworm", "trixie", "sid"])
def test_boot_run_command_and_tear_down(name: str, tmp_path: Path) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")
    image = build_image(name)
    with boot(image) as vm:
        assert vm.run("uname -r").strip() == image.kernel_release
        loaded = vm.run("cat /proc/modules | cut -d' ' -f1").split()
        assert set(VFIO_MODULES) <= set(loaded)
        # SFTP both ways, with a file bigger than one SFTP packet.
        payload = tmp_path / "payload"
        payload.write_bytes(os.urandom(3 << 20))
        vm.ssh.put(payload, "/tmp/payload", mode=0o600)
        assert vm.run("stat -c '%s %a' /tmp/payload").split() == [str(3 << 20), "600"]
        vm.ssh.get("/tmp/payload", tmp_path / "back")
        assert (tmp_path / "back").read_bytes() == payload.read_bytes()
        print(
            f"{name}: {image.kernel_release} ready in {vm.times.boot_to_ready_s:.1f} s "
            f"[{vm.accelerator.name}: {vm.accelerator.reason}]"
        )
        process, run_dir = vm.process, vm.run_dir
    assert process.poll() is not None, "QEMU still running after close()"
    assert not run_dir.exists(), "the run directory (overlay, sockets) was left behind"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(run_dir)], capture_output=True, text=True, check=False
    ).stdout
    assert not leftovers, f"QEMU processes left behind: {leftovers}"
