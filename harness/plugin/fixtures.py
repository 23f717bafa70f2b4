# SPDX-License-Identifier: MIT
"""The VM fixtures. Tests that use them are parametrized by --kernel and marked `vm`.

    def test_something(vm):         # this worker's VM of the kernel, shared between tests
        assert vm.run("uname -r")

    def test_destructive(fresh_vm): # a pristine VM for this test alone (restored in ~1 s)
        fresh_vm.run("rmmod vfio_iommu_type1")

Each test's report records the kernel release, the accelerator, and how its VM was started.
A missing QEMU skips (or, with HARNESS_REQUIRE_VM=1, fails) the test; a guest that fails to
start fails it with the console's tail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest

from harness.kernel.choice import KernelChoice
from harness.plugin.policy import vm_unavailable
from harness.plugin.pool import VmPool

if TYPE_CHECKING:
    from harness.vm.machine import Vm

VM_FIXTURES = ("vm", "fresh_vm")
QEMU = "qemu-system-x86_64"


@pytest.fixture(scope="session")
def vm_pool(request: pytest.FixtureRequest) -> Iterator[VmPool]:
    config = request.config
    from harness.plugin.secure_boot import firmware_of, mok_of

    pool = VmPool(
        fresh=config.getoption("--fresh-vm"),
        memory_mib=config.getoption("--vm-memory"),
        progress=TerminalProgress(config),
        firmware=firmware_of(config),
        mok=mok_of(config),
    )
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def vm_kernel(request: pytest.FixtureRequest) -> KernelChoice:
    """The kernel this test runs on (parametrized from --kernel)."""
    choice: KernelChoice = request.param
    return choice


@pytest.fixture
def vm(request: pytest.FixtureRequest, vm_pool: VmPool, vm_kernel: KernelChoice) -> Vm:
    """This worker's shared VM of the test's kernel."""
    _need_qemu()
    try:
        machine = vm_pool.shared(vm_kernel)
    except Exception as exc:  # every start failure is reported the same way
        _start_failed(vm_kernel, exc)
    _record(request, machine)
    return machine


@pytest.fixture
def fresh_vm(
    request: pytest.FixtureRequest, vm_pool: VmPool, vm_kernel: KernelChoice
) -> Iterator[Vm]:
    """A pristine VM for this test only, closed after it whatever the outcome."""
    _need_qemu()
    try:
        machine = vm_pool.start(vm_kernel)
    except Exception as exc:
        _start_failed(vm_kernel, exc)
    _record(request, machine)
    with machine:
        yield machine


def _need_qemu() -> None:
    if shutil.which(QEMU) is None:
        vm_unavailable(f"{QEMU} not found: run `vfio-harness setup --profile vm`")


def _start_failed(choice: KernelChoice, exc: Exception) -> NoReturn:
    from harness.debian import MirrorNotFoundError
    from harness.images.build import ImageBuildError

    if isinstance(exc, MirrorNotFoundError | ImageBuildError) or (
        isinstance(exc, FileNotFoundError) and exc.filename in ("mmdebstrap", "qemu-img")
    ):
        vm_unavailable(f"{choice.id}: no guest image: {exc}")
    pytest.fail(f"{choice.id}: could not start a VM: {exc}", pytrace=False)


def _record(request: pytest.FixtureRequest, machine: Vm) -> None:
    properties = request.node.user_properties
    properties.append(("kernel", machine.machine.kernel_release))
    properties.append(("accelerator", machine.accelerator.name))
    properties.append(("accelerator_reason", machine.accelerator.reason))
    properties.append(("vm_start", f"{machine.times.how} {machine.times.boot_to_ready_s:.2f}s"))


class TerminalProgress:
    """Progress lines on the terminal (the controller's; xdist workers have none)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def __call__(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[vfio-harness] {line}")
