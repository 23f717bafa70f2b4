# SPDX-License-Identifier: MIT
"""Restoring saved, booted guests: fast, pristine, and not sharing RNG, clock or key."""

from __future__ import annotations

import shutil
import time

import pytest

from harness.images.build import build_image
from harness.plugin.policy import vm_unavailable
from harness.ssh.errors import SshAuthError
from harness.ssh.keys import load_run_key
from harness.ssh.session import connect
from harness.vm.machine import VFIO_MODULES
from harness.vm.saved_state import find_saved_state, start_vm

pytestmark = pytest.mark.vm

URANDOM = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'"


@pytest.mark.parametrize("name", ["bookworm", "trixie", "sid"])
def test_restored_guests_are_pristine_and_distinct(name: str) -> None:
    if shutil.which("qemu-system-x86_64") is None:
        vm_unavailable("qemu-system-x86_64 not found: run `vfio-harness setup --profile vm`")
    image = build_image(name)
    with start_vm(image) as first:  # restores, or cold-boots and saves the state first
        first.run("echo dirty > /root/marker")
    with start_vm(image, fresh="restore") as a, start_vm(image, fresh="restore") as b:
        for vm in (a, b):
            assert vm.times.how == "restore"
            print(f"{name}: restored, ready in {vm.times.boot_to_ready_s:.2f} s "
                  f"[{vm.accelerator.name}]")  # fmt: skip
            assert vm.run("uname -r").strip() == image.kernel_release
            loaded = set(vm.run("cut -d' ' -f1 /proc/modules").split())
            assert set(VFIO_MODULES) <= loaded
            assert vm.run("cat /root/marker 2>/dev/null || echo pristine").strip() == "pristine"
            guest_clock = float(vm.run("date -u +%s.%N"))
            assert abs(guest_clock - time.time()) < 5, "the restored guest's clock was not synced"
            # The generation ID device is what makes the kernel reseed its RNG after a restore.
            assert vm.run("ls -d /sys/bus/*/drivers/vmgenid/QEMUVGID:00").strip()
        a.run("echo a-only > /root/marker")
        assert b.run("cat /root/marker 2>/dev/null || echo pristine").strip() == "pristine"
        assert a.run(URANDOM) != b.run(URANDOM), "two restored guests share their RNG state"
        assert a.ssh_port != b.ssh_port
        saved = find_saved_state(a.machine)
        assert saved is not None
        # Each restored VM replaced the key saved with the state by its own.
        with pytest.raises(SshAuthError):
            connect("127.0.0.1", a.ssh_port, identity=load_run_key(saved.key_path),
                    host_key=image.host_key, timeout=30)  # fmt: skip
        connect("127.0.0.1", a.ssh_port, identity=a.key, host_key=image.host_key).close()
        run_dirs = (a.run_dir, b.run_dir)
        processes = (a.process, b.process)
    assert all(p.poll() is not None for p in processes), "QEMU still running after close()"
    assert not any(d.exists() for d in run_dirs), "a run directory was left behind"
