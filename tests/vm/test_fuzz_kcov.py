# SPDX-License-Identifier: MIT
"""KCOV from a guest process (harness.fuzz.kcov), the fuzzer's feedback: on the debug kernel a
VFIO call's blocks in drivers/vfio are seen, inside the function that ran them, and a call that
runs no instrumented code adds none; on a Debian kernel (no CONFIG_KCOV) it says so.

The debug kernel is built as test_kernel_build.py's tests build it (CI, or
HARNESS_KERNEL_BUILD=1)."""

from __future__ import annotations

import json

import pytest

from harness.images.build import build_image
from harness.kernel.custom import prepare_custom_kernel
from harness.kernel.recipe import build_recipe_kernel, find_kernel_recipe
from harness.vm.guest_python import run_guest_python
from harness.vm.saved_state import start_vm
from tests.vm.test_kernel_build import wanted

pytestmark = pytest.mark.vm

VFIO_GET_API_VERSION = 0x3B64
TRACE = f"""
import fcntl, json, os
from harness.fuzz.kcov import Kcov

os.system("modprobe -a vfio vfio_iommu_type1")
with Kcov() as kcov:
    with kcov.trace() as idle:
        os.getpid()
    with kcov.trace() as vfio:
        fd = os.open("/dev/vfio/vfio", os.O_RDWR)
        fcntl.ioctl(fd, {VFIO_GET_API_VERSION})
        os.close(fd)
print(json.dumps({{"idle": idle, "vfio": vfio}}))
"""
NO_KCOV = """
from harness.fuzz.kcov import Kcov, KcovError
try:
    with Kcov():
        print("kcov")
except KcovError as err:
    print(err)
"""


def symbol_range(kallsyms: str, name: str) -> tuple[int, int]:
    """[start, next symbol's start) of a text symbol in /proc/kallsyms."""
    starts = sorted(
        int(fields[0], 16) for fields in map(str.split, kallsyms.splitlines()) if len(fields) >= 3
    )
    for line in kallsyms.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == name:
            start = int(fields[0], 16)
            return start, next(s for s in starts if s > start)
    raise AssertionError(f"{name} is not in /proc/kallsyms")


def test_kcov_sees_the_vfio_blocks_a_call_ran() -> None:
    wanted()
    build = build_recipe_kernel(find_kernel_recipe("debug"))
    bundle = prepare_custom_kernel(build.build_dir)
    with start_vm(build_image("bookworm"), kernel=bundle) as vm:
        traced = json.loads(run_guest_python(vm, TRACE).stdout.strip().splitlines()[-1])
        kallsyms = vm.run("cat /proc/kallsyms")
    assert traced["idle"] == [], "getpid() ran instrumented code: KCOV is not per call"
    start, end = symbol_range(kallsyms, "vfio_fops_unl_ioctl")
    inside = [pc for pc in traced["vfio"] if start <= pc < end]
    assert inside, f"no PC in vfio_fops_unl_ioctl [{start:#x}, {end:#x}) of {len(traced['vfio'])}"


def test_a_kernel_without_kcov_says_so() -> None:
    with start_vm(build_image("bookworm")) as vm:
        said = run_guest_python(vm, NO_KCOV).stdout.strip()
    assert said == "no /sys/kernel/debug/kcov: the kernel has no CONFIG_KCOV"
