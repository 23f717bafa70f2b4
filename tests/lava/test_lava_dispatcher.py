# SPDX-License-Identifier: MIT
"""Our LAVA job, run for real: Debian's lava-dispatcher (`lava-run`, no server) boots the
bookworm host image on a local QEMU device, writes its test overlay, our wheel, a wheelhouse
and our driver into the image, and runs the job `vfio-harness lava job` writes: the wheel
installed offline into a venv, the driver loaded, a third of the suite (`--shard 1/3`) run with
`--target local`, every test recorded with `lava-test-case`, and the KTAP printed.

What LAVA recorded must be what the run's KTAP says, test by test: the same names and verdicts,
every test passed or skipped (ours is a correct driver), and some passed. `tox -e lava`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.images.build import BuiltImage
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.plugin.policy import vm_unavailable
from harness.report.lava import JobSpec, job, lava_name
from harness.vm.accel import choose_accelerator
from harness.vm.machine import VFIO_MODULES
from tests.lava.dispatcher import LAVA_RUN, LavaRun, device_config, lava_run
from tests.packaging import Built, PackagingError, download_wheelhouse
from tests.vm.l1 import nested_image

pytestmark = pytest.mark.vm

DEFINITION = "0_vfio-harness"  # LAVA names an inline definition by its index and name
SHARD = "1/3"  # a stable third of the suite: minutes under TCG
MDEV = ("--mdev-parent", "vfio_harness", "--mdev-type", "vfio_harness_mdev-small")
PROMPT = "root@harness-guest"
LAVA_TIMEOUT_S = 3600.0
KTAP_CASE = re.compile(r"^ {4}(not ok|ok) \d+ (\S+)(?: # (SKIP|XFAIL)\b.*)?$")


def _dpkg_version(image: BuiltImage, package: str) -> str:
    """The version of `package` in the image's dpkg database, read with debugfs."""
    status = subprocess.run(
        ["debugfs", "-R", "cat /var/lib/dpkg/status", str(image.rootfs)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for stanza in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            found = re.search(r"^Version: (?:\d+:)?(\d+)\.(\d+)", stanza, re.M)
            if found:
                return f"{found[1]}.{found[2]}"
    raise AssertionError(f"{package} is not in {image.rootfs}")


def _major_minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def _supermin_env(image: BuiltImage, work: Path) -> dict[str, str]:
    """libguestfs (LAVA writes overlays into the image with it) boots an appliance: give it the
    image's own kernel and modules (the host may have none in /boot) and TCG unless KVM works."""
    modules = work / "supermin-modules"
    release = image.kernel_release
    subprocess.run(
        ["debugfs", "-R", f"rdump /usr/lib/modules/{release} {modules}", str(image.rootfs)],
        capture_output=True, check=True,
    )  # fmt: skip
    env = {
        "LIBGUESTFS_BACKEND": "direct",
        "SUPERMIN_KERNEL": str(image.vmlinux),
        "SUPERMIN_KERNEL_VERSION": release,
        "SUPERMIN_MODULES": str(modules / release),
    }
    if choose_accelerator().name != "kvm":
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


def _ktap_cases(console: list[str]) -> dict[str, str]:
    """The tests of the KTAP the job printed, with LAVA's verdict for each."""
    cases = {}
    for line in console:
        found = KTAP_CASE.match(line.rstrip("\r"))
        if found:
            verdict = "skip" if found[3] == "SKIP" else "pass" if found[1] == "ok" else "fail"
            cases[lava_name(found[2])] = verdict
    return cases


@pytest.fixture(scope="module")
def lava_job_run(package: Built, tmp_path_factory: pytest.TempPathFactory) -> LavaRun:
    if not Path(LAVA_RUN).exists():
        vm_unavailable("lava-run not found: run `vfio-harness setup --profile lava`")
    image = nested_image()
    try:
        module = build_vendor_module(image)
    except VendorModuleError as err:
        pytest.fail(str(err), pytrace=False)
    work = tmp_path_factory.mktemp("lava")
    wheels = work / "wheelhouse"
    python = _major_minor(_dpkg_version(image, "python3"))
    glibc = _major_minor(_dpkg_version(image, "libc6"))
    try:
        download_wheelhouse(package.wheel, wheels, python=python, glibc=glibc)
    except PackagingError as err:
        pytest.fail(str(err), pytrace=False)
    with tarfile.open(work / "wheelhouse.tar", "w") as tar:
        tar.add(wheels, arcname=".")
    shutil.copy(module, work / module.name)
    accelerator = choose_accelerator()
    spec = JobSpec(
        wheel=f"/root/wheelhouse/{package.wheel.name}",
        image=image.rootfs.as_uri(),
        shard=SHARD,
        run_options=("--target", "local", *MDEV),
        timeout_minutes=40,
        prompt=PROMPT,
        kernel=image.vmlinux.as_uri(),
        initrd=image.initrd.as_uri(),
        # Not quiet: LAVA knows the boot started by the kernel's "Linux version" line.
        append="console=ttyS0 panic=-1 harness.shell=ttyS0",
        rootfs_format="ext4",
        files={
            "/root/wheelhouse": (work / "wheelhouse.tar").as_uri(),
            f"/root/{module.name}": (work / module.name).as_uri(),
        },
        setup=(f"modprobe -a {' '.join(VFIO_MODULES)}", f"insmod /root/{module.name}"),
        login=False,
        pip_options=("--no-index", "--find-links", "/root/wheelhouse"),
    )
    options = [" ".join(accelerator.qemu_args), "-machine q35", "-m 3072", "-smp 2",
               "-nographic", "-netdev user,id=net0", "-device virtio-net-pci,netdev=net0",
               "-no-reboot"]  # fmt: skip
    started = time.monotonic()
    result = lava_run(job(spec), device_config(options), work, _supermin_env(image, work),
                      LAVA_TIMEOUT_S)  # fmt: skip
    print(f"lava-run: exit {result.status} in {time.monotonic() - started:.0f} s "
          f"({accelerator.name}); log {work / 'lava-run.log'}")  # fmt: skip
    return result


def test_lava_runs_the_job_to_the_end(lava_job_run: LavaRun) -> None:
    job_result = [r for r in lava_job_run.results() if r.get("definition") == "lava"
                  and r.get("case") == "job"]  # fmt: skip
    assert lava_job_run.status == 0 and job_result and job_result[-1]["result"] == "pass", (
        f"lava-run exit {lava_job_run.status}, job {job_result}: see the log"
    )


def test_lava_records_every_test_of_the_ktap(lava_job_run: LavaRun) -> None:
    recorded = {
        str(r["case"]): str(r["result"])
        for r in lava_job_run.results()
        if r.get("definition") == DEFINITION
    }
    ktap = _ktap_cases(lava_job_run.target_lines())
    print(f"LAVA recorded {len(recorded)} cases: {dict(Counter(recorded.values()))}; "
          f"the KTAP has {len(ktap)}: {dict(Counter(ktap.values()))}")  # fmt: skip
    assert ktap, "the job printed no KTAP test lines"
    assert recorded == ktap
    assert set(recorded.values()) <= {"pass", "skip"}
    assert "pass" in recorded.values()
