# SPDX-License-Identifier: MIT
"""Issue 6, end to end through QEMU: inside a VM (L1), QEMU presents our mdev to a machine
with `-device vfio-pci,sysfsdev=...`, and a guest driver uses it; steps 1-5 of the issue.

On the host: the image with QEMU (vm_images/nested/bookworm-nested.toml), our module for its
kernel. In a fresh L1: insmod, then tests/vm/guest/nested_checks.py (harness.nested) creates
an mdev, starts L1's QEMU on it and runs the checks; the last stdout line is a JSON report.

- test_steps_through_qtest: L1's QEMU runs no guest code and is driven over qtest.
- test_steps_in_a_booted_l2 (CI, KVM hosts, or HARNESS_NESTED_L2=1): L1's QEMU boots L2 (the
  image's kernel, a busybox initramfs, our L2 driver tests/vm/l2_driver/hmdev_l2.c), whose
  shell is the driver. Under TCG in TCG this takes minutes (measured: L2 boots in 64-100 s,
  the whole test 2.5-4.5 min, against ~15 s for the qtest variant from a saved VM state).

Each test records the accelerator and QEMU versions (host's and L1's) as junit properties
and prints them with its timings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.images.build import BuiltImage
from harness.kmod.build_env import build_env_for
from harness.kmod.builder import ModuleBuildError, build_module
from harness.plugin.policy import vm_required
from harness.vm.accel import choose_accelerator
from harness.vm.machine import Vm
from tests.vm.l1 import GUEST, STEPS_QTEST, host_qemu_version, nested_image, run_in_l1

pytestmark = pytest.mark.vm

GUEST_CHECKS = GUEST / "nested_checks.py"
L2_DRIVER = Path(__file__).parent / "l2_driver"
OPT_IN_ENV = "HARNESS_NESTED_L2"
STEPS_L2 = STEPS_QTEST - 1  # no 5.err_irq: it stops the machine

RecordProperty = Callable[[str, object], None]


def judge(
    report: dict[str, Any],
    problems: list[str],
    vm: Vm,
    expected_checks: int,
    record_property: RecordProperty,
    wall_s: float,
) -> None:
    """Record versions and timings, then fail with every broken step, clearly."""
    # "kernel", "accelerator" and "accelerator_reason" as the plugin's fixtures record them
    # (its per-kernel summary reads them).
    versions = {
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "accelerator_reason": vm.accelerator.reason,
        "l1_qemu_accelerator": f"{report.get('l1_qemu_accelerator', '?')} "
        + ("(-S: no guest code)" if report["variant"] == "qtest" else "(L2 boots under it)"),
        "qemu_host": host_qemu_version(),
        "qemu_l1": report.get("qemu_l1", "?"),
    }  # fmt: skip
    timings = {
        "wall_s": round(wall_s, 1),
        "l1_checks_s": report.get("wall_s"),
        "machine_ready_s": report.get("seconds_machine_ready"),
    }
    for name, value in {**versions, **timings}.items():
        record_property(name, value)
    print(f"\n{report['variant']}: {json.dumps({**versions, **timings})}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    results: dict[str, str] = report.get("results", {})
    failed = {name: why for name, why in results.items() if why != "ok"}
    problems = [f"{name}: {why}" for name, why in failed.items()] + problems
    if "setup" in report:
        problems.insert(0, f"setting up L1's QEMU failed:\n{report['setup']}")
    if failed or "setup" in report:
        # 5.err_irq makes QEMU print "Unrecoverable error detected" on purpose.
        problems.append(
            "L1 QEMU stderr (5.err_irq's error is expected): " + str(report.get("qemu_stderr", ""))
        )
        problems.append("QEMU trace (last lines):\n  " + "\n  ".join(report.get("trace_tail", [])))
        if "l2_console_tail" in report:
            problems.append("L2 console (last lines):\n  " + "\n  ".join(report["l2_console_tail"]))
    if len(results) < expected_checks and not problems:
        problems.append(f"only {len(results)} of {expected_checks} checks ran: {sorted(results)}")
    print(f"{len(results) - len(failed)} of {len(results)} checks passed")
    assert not problems, "\n".join(problems)


def test_steps_through_qtest(record_property: RecordProperty) -> None:
    image = nested_image()
    started = time.monotonic()
    report, problems, vm = run_in_l1(image, GUEST_CHECKS, ["qtest", "/tmp/nested-qtest"], 300)
    judge(report, problems, vm, STEPS_QTEST, record_property, time.monotonic() - started)


def l2_driver(image: BuiltImage) -> Path:
    """hmdev_l2.ko for the image's kernel (which L2 boots too), built W=1, warning-free."""
    dest = Path(tempfile.mkdtemp(prefix="hmdev-l2-"))
    try:
        built = build_module(L2_DRIVER, build_env_for(image), dest=dest, extra_warnings=True)
    except ModuleBuildError as err:
        pytest.fail(f"tests/vm/l2_driver does not build: {err}", pytrace=False)
    warnings = (*built.warnings, *built.modpost_warnings)
    assert not warnings, "hmdev_l2 built with warnings:\n" + "\n".join(warnings)
    return built.modules[0]


def test_steps_in_a_booted_l2(record_property: RecordProperty) -> None:
    # With KVM on the host, L1 gets nested virtualization and L2 is a normal guest; CI runs it
    # under TCG too (about 2.5 minutes here).
    wanted = os.environ.get(OPT_IN_ENV) == "1" or vm_required()
    if not wanted and choose_accelerator().name != "kvm":
        pytest.skip(f"booting L2 under nested TCG takes minutes: set {OPT_IN_ENV}=1")
    image = nested_image()
    driver = l2_driver(image)
    started = time.monotonic()
    uploads = [(image.vmlinux, "/tmp/l2-vmlinux"), (driver, "/tmp/hmdev_l2.ko")]
    args = ["l2", "/tmp/nested-l2", "/tmp/l2-vmlinux", "/tmp/hmdev_l2.ko"]
    try:
        report, problems, vm = run_in_l1(image, GUEST_CHECKS, args, 900, uploads)
    finally:
        shutil.rmtree(driver.parent, ignore_errors=True)
    judge(report, problems, vm, STEPS_L2, record_property, time.monotonic() - started)
