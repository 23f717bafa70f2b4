# SPDX-License-Identifier: MIT
"""The reference mdev driver (kmod/) end to end in each guest kernel.

On the host: the module is built for the image's kernel (cached per source and kernel, W=1,
warning-free). In a fresh guest: insmod, then tests/vm/guest/refdev_checks.py through
harness.uapi and harness.refdev (sysfs types and available_instances, a device of every type,
registers, config space, BAR sizing, every DMA mode, kept pins released by unmap, removal,
rmmod refused while a device is open and removing devices that are present, insmod again),
then rmmod; the kernel log of the whole sequence must hold no warning, BUG, Oops or trace.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from harness.images.build import BuiltImage
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.refdev import contract
from harness.vm.guest_python import run_guest_python
from harness.vm.saved_state import start_vm
from tests.vm.l1 import kernel_trouble, l1_image

pytestmark = pytest.mark.vm

KERNELS = ["bookworm", "trixie", "sid"]
GUEST_CHECKS = Path(__file__).parent / "guest" / "refdev_checks.py"
GUEST_KO = f"/tmp/{contract.MODULE_NAME}.ko"


def image_for(name: str) -> BuiltImage:
    """A top-level recipe's image (the same preconditions as the L1 images)."""
    return l1_image(Path(f"{name}.toml"))


def guest_results(stdout: str, stderr: str) -> dict[str, str]:
    lines = stdout.strip().splitlines()
    try:
        results: dict[str, str] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"the guest checks printed no results:\nstdout:\n{stdout}\nstderr:\n{stderr}",
            pytrace=False,
        )
    return results


@pytest.mark.parametrize("name", KERNELS)
def test_the_reference_device_end_to_end(name: str) -> None:
    image = image_for(name)
    try:
        module = build_vendor_module(image)
    except VendorModuleError as err:
        pytest.fail(str(err), pytrace=False)

    with start_vm(image) as vm:
        marker = f"vfio-harness test_refdev {uuid.uuid4()}"
        vm.run(f"echo '{marker}' >/dev/kmsg")
        vm.ssh.put(module, GUEST_KO)
        vm.run(f"insmod {GUEST_KO}")
        try:
            run = run_guest_python(
                vm, GUEST_CHECKS.read_text(encoding="utf-8"), args=[GUEST_KO], check=False
            )
        finally:
            rmmod = vm.ssh.run(f"rmmod {contract.MODULE_NAME}", 60, check=False)
            log = vm.run("dmesg")

    results = guest_results(run.stdout, run.stderr)
    failed = {check: why for check, why in results.items() if why != "ok"}
    problems = [f"{check}: {why}" for check, why in failed.items()]
    if run.exit_status != 0:
        problems.append(f"guest checks exited {run.exit_status}:\n{run.stderr}")
    if not rmmod.ok:
        problems.append(f"rmmod failed ({rmmod.exit_status}): {rmmod.stderr.strip()}")
    problems += [f"kernel log: {line}" for line in kernel_trouble(log, marker)]
    print(f"{name}: {len(results) - len(failed)} of {len(results)} guest checks passed")
    assert not problems, f"{name} ({image.kernel_release}):\n" + "\n".join(problems)
    assert len(results) >= 33, f"only {len(results)} checks ran: {sorted(results)}"
