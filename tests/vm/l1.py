# SPDX-License-Identifier: MIT
"""What the tests that run checks inside an L1 share (test_nested, test_mdevctl, test_libvirt,
test_live_migration): the L1 images, our module loaded for the checks and unloaded after, the
checks' JSON report, and the kernel log lines that must fail a run.

    report, problems, vm = run_in_l1(libvirt_image(), GUEST / "mdevctl_checks.py", [...], 300)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.images.build import BuiltImage, build_image, recipe_dir
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.plugin.policy import vm_unavailable
from harness.refdev import contract
from harness.ssh.command import CommandResult
from harness.ssh.errors import CommandTimeoutError, SshError
from harness.vm.guest_python import run_guest_python
from harness.vm.machine import Vm
from harness.vm.saved_state import start_vm

GUEST = Path(__file__).parent / "guest"
# Every check of harness/nested/steps.py on a qtest machine; a run that reports fewer lost some.
STEPS_QTEST = 23
MODULE_NAME = contract.MODULE_NAME
GUEST_KO = f"/tmp/{MODULE_NAME}.ko"
# Not top-level recipes: `--kernel all` means every vm_images/*.toml (vm_images/README.md).
NESTED_RECIPE = Path("nested") / "bookworm-nested.toml"
LIBVIRT_RECIPE = Path("nested") / "trixie-libvirt.toml"
KERNEL_TROUBLE = re.compile(
    r"WARNING:|BUG:|Oops|Call Trace|general protection fault|UBSAN:|KASAN:|refcount_t:"
)


@dataclass(frozen=True)
class GuestDriver:
    """An mdev driver's .ko on this host, and its module name."""

    ko: Path
    name: str

    @property
    def guest_ko(self) -> str:
        return f"/tmp/{self.name}.ko"


def l1_image(recipe: Path) -> BuiltImage:
    """An L1 image (built on first use), or the policy's skip/failure when this host cannot."""
    for tool in ("mmdebstrap", "mke2fs", "unshare", "chroot", "qemu-system-x86_64"):
        if shutil.which(tool) is None:
            vm_unavailable(f"{tool} not found: run `vfio-harness setup --profile vm`")
    if os.geteuid() != 0:
        vm_unavailable("building modules in a Debian chroot needs root")
    return build_image(recipe_dir() / recipe)


def nested_image() -> BuiltImage:
    """bookworm with QEMU 7.2: the nested steps (test_nested.py)."""
    return l1_image(NESTED_RECIPE)


def libvirt_image() -> BuiltImage:
    """trixie under systemd with QEMU 10, libvirt and mdevctl (issue 19)."""
    return l1_image(LIBVIRT_RECIPE)


def host_qemu_version() -> str:
    out = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()[0].strip()


def kernel_trouble(log: str, marker: str) -> list[str]:
    """The kernel log's warnings, BUGs and oopses after `marker`."""
    after = log.split(marker, 1)[1] if marker in log else log
    return [line for line in after.splitlines() if KERNEL_TROUBLE.search(line)]


def last_json(stdout: str, stderr: str) -> dict[str, Any]:
    """The checks' report: their last stdout line; a clear failure when there is none."""
    lines = stdout.strip().splitlines()
    report: dict[str, Any] | None = None
    with contextlib.suppress(json.JSONDecodeError):
        report = json.loads(lines[-1]) if lines else None
    if not isinstance(report, dict):  # outside the except: no chained traceback
        pytest.fail(
            "the L1 checks printed no report:\n"
            f"stdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}",
            pytrace=False,
        )
    return report


def run_in_l1(
    image: BuiltImage,
    script: Path,
    args: Sequence[str],
    timeout: float,
    uploads: Sequence[tuple[Path, str]] = (),
    memory_mib: int = 1024,
    fault: int = 0,
    driver: GuestDriver | None = None,
) -> tuple[dict[str, Any], list[str], Vm]:
    """In a fresh L1 of `image`: insmod our module (or `driver`), run `script` (a guest
    Python file) with `args`, rmmod. (its report, what else went wrong, the VM afterwards).
    `fault`: load the test build of ours with these bits of kmod/faults.h switched on."""
    if driver is None:
        try:
            driver = GuestDriver(build_vendor_module(image, faults=bool(fault)), MODULE_NAME)
        except VendorModuleError as err:
            pytest.fail(str(err), pytrace=False)
    for attempt_no in (1, 2):
        outcome = _run_once(image, driver, script, args, timeout, uploads, memory_mib, fault)
        if not isinstance(outcome, L1Lost):
            return outcome
        if attempt_no == 1 and outcome.retry:
            # The connection went with a clean console and a live QEMU: the transport, not
            # the kernel or our driver. Said, then tried once more in a fresh L1.
            print(f"\n{outcome.message}\nretrying once in a fresh L1")
            continue
        pytest.fail(outcome.message, pytrace=False)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class L1Lost:
    """SSH to L1 went away during the checks."""

    message: str
    retry: bool  # QEMU still runs and L1's console shows no kernel trouble


def _run_once(
    image: BuiltImage,
    driver: GuestDriver,
    script: Path,
    args: Sequence[str],
    timeout: float,
    uploads: Sequence[tuple[Path, str]],
    memory_mib: int,
    fault: int,
) -> tuple[dict[str, Any], list[str], Vm] | L1Lost:
    problems: list[str] = []
    with start_vm(image, memory_mib=memory_mib) as vm:
        marker = f"vfio-harness {script.stem} {uuid.uuid4()}"
        vm.run(f"echo '{marker}' >/dev/kmsg")
        vm.ssh.put(driver.ko, driver.guest_ko)
        for local, remote in uploads:
            vm.ssh.put(local, remote)
        vm.run(f"insmod {driver.guest_ko}" + (f" fault={fault}" if fault else ""))
        lost: SshError | None = None
        run: CommandResult | None = None
        try:
            run = run_guest_python(
                vm, script.read_text(encoding="utf-8"), args=args, timeout=timeout, check=False
            )
        except CommandTimeoutError:
            raise  # the checks hung: not a lost connection
        except SshError as err:
            lost = err
        finally:
            try:
                rmmod = vm.ssh.run(f"rmmod {driver.name}", 60, check=False)
                log = vm.run("dmesg")
            except SshError as err:  # reported below, with what the checks printed
                lost = lost or err
        if lost is not None or run is None:
            return _lost(vm, marker, script, lost, run)
    report = last_json(run.stdout, run.stderr)
    if run.exit_status != 0:
        problems.append(f"L1 checks exited {run.exit_status}:\n{run.stderr[-3000:]}")
    if not rmmod.ok:
        problems.append(f"rmmod failed ({rmmod.exit_status}): {rmmod.stderr.strip()}")
    problems += [f"L1 kernel log: {line}" for line in kernel_trouble(log, marker)]
    return report, problems, vm


def _lost(
    vm: Vm, marker: str, script: Path, err: SshError | None, run: CommandResult | None
) -> L1Lost:
    vm.console.poll()
    console = "\n".join(vm.console.tail(400))
    trouble = kernel_trouble(console, marker)
    qemu = "still runs" if vm.alive() else f"exited {vm.process.poll()}"
    printed = "nothing: they did not finish" if run is None else (
        f"exit {run.exit_status}:\n{run.stdout[-1500:]}\n{run.stderr[-1500:]}"
    )  # fmt: skip
    message = (
        f"SSH to L1 went away during {script.name} ({err}); L1's QEMU {qemu}. The checks "
        f"printed {printed}\nL1 console (last lines):\n  " + "\n  ".join(vm.console.tail(30))
    )
    return L1Lost(message, retry=vm.alive() and not trouble)
