# SPDX-License-Identifier: MIT
"""Bring your own kernel: trixie's kernel, laid out as a developer's build, boots on bookworm.

The kernel and its modules come out of the trixie image's root disk (debugfs, no mount) into a
directory shaped like `make modules_install INSTALL_MOD_PATH=DIR` output plus the bzImage,
without the indexes depmod writes: preparing it must index the modules itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.images.build import BuiltImage, build_image
from harness.kernel.custom import MODULES_PARAM, prepare_custom_kernel
from harness.plugin.policy import vm_unavailable
from harness.vm.machine import VFIO_MODULES, boot

pytestmark = pytest.mark.vm

ROOTFS = "bookworm"
KERNEL_DONOR = "trixie"
# What make modules_install installs; everything else in lib/modules/<release> is depmod's.
KBUILD_FILES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")
TOOLS = ("qemu-system-x86_64", "mmdebstrap", "mke2fs", "debugfs")


def _require_tools() -> None:
    sbin = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
    for tool in (*TOOLS, "depmod"):
        if shutil.which(tool, path=sbin) is None:
            vm_unavailable(f"{tool} not found: run `vfio-harness setup --profile vm`")


def _debugfs(image: Path, request: str) -> None:
    subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, check=True)


def user_build_of(image: BuiltImage, dest: Path) -> Path:
    """`image`'s kernel as a developer's build output: bzImage, .config, lib/modules/<release>.

    Times are preserved (`rdump`, `dump -p`, copy2), so the cache key is the same on every run.
    """
    release = image.kernel_release
    modules_root = dest / "lib/modules"
    modules_root.mkdir(parents=True)
    _debugfs(image.rootfs, f"rdump /usr/lib/modules/{release} {modules_root}")
    _debugfs(image.rootfs, f"dump -p /boot/vmlinuz-{release} {dest / 'bzImage'}")
    shutil.copy2(image.kernel_config, dest / ".config")
    modules_dir = modules_root / release
    for index in modules_dir.glob("modules.*"):
        if index.name not in KBUILD_FILES:
            index.unlink()
    assert (dest / "bzImage").stat().st_size > 1 << 20
    assert not (modules_dir / "modules.dep").exists()
    return dest


def test_custom_kernel_boots_on_the_rootfs_with_its_own_modules(tmp_path: Path) -> None:
    _require_tools()
    donor = build_image(KERNEL_DONOR)
    rootfs = build_image(ROOTFS)
    release = donor.kernel_release
    assert release != rootfs.kernel_release

    build = user_build_of(donor, tmp_path / "linux-build")
    start = time.monotonic()
    bundle = prepare_custom_kernel(build)
    prepared = time.monotonic() - start
    assert bundle.release == release
    assert bundle.kernel.read_bytes()[:4] == b"\x7fELF"  # the uncompressed PVH kernel
    assert bundle.config is not None and bundle.config.read_text().startswith("#")
    assert len(bundle.extra_disks) == 1
    assert bundle.kernel_params == {MODULES_PARAM: "/dev/vdb"}

    start = time.monotonic()
    assert prepare_custom_kernel(build) == bundle
    warm = time.monotonic() - start
    assert warm < 2.0, f"a prepared kernel took {warm:.1f} s to find in the cache"

    with boot(rootfs, kernel=bundle) as vm:
        assert vm.run("uname -r").strip() == release
        vm.run("modprobe -a " + " ".join(VFIO_MODULES))
        for module in VFIO_MODULES:
            assert vm.run(f"[ -d /sys/module/{module} ] && echo loaded").strip() == "loaded"
        assert (
            vm.run("modinfo -n vfio")
            .strip()
            .endswith(f"/modules/{release}/kernel/drivers/vfio/vfio.ko.xz")
        )
        mounts = [line.split() for line in vm.run("cat /proc/mounts").splitlines()]
        modules_mount = [m for m in mounts if m[1].endswith(f"/lib/modules/{release}")]
        assert len(modules_mount) == 1, mounts
        device, _point, fstype, options = modules_mount[0][:4]
        assert (device, fstype, options.split(",")[0]) == ("/dev/vdb", "ext4", "ro")
        # Mounted on its own directory: the root's own kernel's modules are still there.
        assert rootfs.kernel_release in vm.run("ls /lib/modules").split()
        print(
            f"{bundle.label} on {ROOTFS}: prepared in {prepared:.1f} s, found again in "
            f"{warm:.2f} s, ready in {vm.times.boot_to_ready_s:.1f} s [{vm.accelerator.name}]"
        )
        process, run_dir = vm.process, vm.run_dir
    assert process.poll() is not None, "QEMU still running after close()"
    assert not run_dir.exists(), "the run directory (overlay, sockets) was left behind"
