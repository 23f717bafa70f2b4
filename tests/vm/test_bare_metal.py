# SPDX-License-Identifier: MIT
"""A guest plays a bare-metal host running the nightly job: no checkout, the harness installed
from its wheel into a venv (offline, from a wheelhouse, as in a lab without PyPI), the driver
loaded by hand, and `vfio-harness run --target local` testing the device on that host.

Two drivers: ours (kmod/), and one we did not write, the kernel's mtty sample (built from
Debian's linux-source like any vendor's driver). Each run's JUnit must show that the suite
really ran: every test collected, passed tests in every file (another driver may leave out only
the files that need our reference device), none skipped for want of a device. mtty's real bugs
are expected failures (tests/uapi/known/mtty.toml): anything else it does must pass.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.resources import SUITE
from harness.images.build import BuiltImage
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.kmod.samples import SampleError, sample_source
from harness.vm.machine import VFIO_MODULES, Vm
from harness.vm.saved_state import start_vm
from tests.packaging import Built, PackagingError, download_wheelhouse
from tests.vm.l1 import nested_image
from tests.vm.suite_junit import read_suite_junit, untested

pytestmark = pytest.mark.vm

VENV = "/opt/vfio-harness-venv"
WHEELHOUSE = "/tmp/wheelhouse"
INSTALL_TIMEOUT_S = 600.0
SUITE_TIMEOUT_S = 1800.0
SUITE_FILES = len(list(SUITE.locate().path.glob("test_*.py")))

RecordProperty = Callable[[str, object], None]


@dataclass(frozen=True)
class Host:
    vm: Vm
    image: BuiltImage
    install_s: float

    def run(self, command: str, timeout: float) -> tuple[int, str]:
        """(exit status, stdout and stderr's end) of `command`, timeout scaled for TCG."""
        result = self.vm.ssh.run(command, timeout * self.vm.accelerator.timeout_scale, check=False)
        return result.exit_status, f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}"


def _guest_versions(vm: Vm) -> tuple[tuple[int, int], tuple[int, int]]:
    """(Python, glibc) of the guest's python3: what its wheels must be built for."""
    out = vm.run(
        "python3 -c 'import os, sys; print(*sys.version_info[:2], "
        '*os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])\''
    ).split()
    python_major, python_minor, glibc_major, glibc_minor = (int(part) for part in out)
    return (python_major, python_minor), (glibc_major, glibc_minor)


@pytest.fixture(scope="module")
def host(package: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A booted host with the harness installed from the wheel, and nothing else of ours."""
    image = nested_image()
    with start_vm(image) as vm:
        python, glibc = _guest_versions(vm)
        try:
            wheels = download_wheelhouse(
                package.wheel, tmp_path_factory.mktemp("wheels"), python=python, glibc=glibc
            )
        except PackagingError as err:
            pytest.fail(str(err), pytrace=False)
        vm.run(f"mkdir -p {WHEELHOUSE}")
        for wheel in wheels:
            vm.ssh.put(wheel, f"{WHEELHOUSE}/{wheel.name}")
        started = time.monotonic()
        installed = Host(vm, image, 0.0).run(
            f"python3 -m venv {VENV} && {VENV}/bin/pip install --quiet --no-index "
            f"--find-links {WHEELHOUSE} {WHEELHOUSE}/{package.wheel.name}",
            INSTALL_TIMEOUT_S,
        )
        assert installed[0] == 0, f"installing the wheel in the guest failed:\n{installed[1]}"
        yield Host(vm, image, time.monotonic() - started)


def _load(host: Host, module: Path) -> str:
    """insmod `module` (after the VFIO core); its name, for rmmod."""
    remote = f"/tmp/{module.name}"
    host.vm.ssh.put(module, remote)
    host.vm.run(f"modprobe -a {' '.join(VFIO_MODULES)} && insmod {remote}")
    return module.name.removesuffix(".ko").replace("-", "_")


def _suite_on_host(
    host: Host, module: Path, options: str, record_property: RecordProperty
) -> tuple[int, str, str]:
    """`vfio-harness run --target local OPTIONS` with `module` loaded: (exit, output, JUnit)."""
    name = _load(host, module)
    reports = f"/root/reports-{name}"
    started = time.monotonic()
    try:
        status, output = host.run(
            f"cd /root && {VENV}/bin/vfio-harness run --target local --reports {reports} {options}",
            SUITE_TIMEOUT_S,
        )
        junit = host.vm.ssh.read_text(f"{reports}/junit.xml") if status in (0, 1) else ""
    finally:
        host.vm.run(f"rmmod {shlex.quote(name)}")
    for key, value in {
        "kernel": host.vm.machine.kernel_release,
        "accelerator": host.vm.accelerator.name,
        "accelerator_reason": host.vm.accelerator.reason,
        "install_s": round(host.install_s, 1),
        "suite_s": round(time.monotonic() - started, 1),
    }.items():
        record_property(key, value)
    return status, output, junit


def test_the_installed_harness_tests_our_driver_on_the_host_itself(
    host: Host, record_property: RecordProperty
) -> None:
    try:
        module = build_vendor_module(host.image)
    except VendorModuleError as err:
        pytest.fail(str(err), pytrace=False)
    status, output, junit = _suite_on_host(host, module, "", record_property)
    assert status == 0, output
    result = read_suite_junit(junit)
    print(f"our driver, --target local in the guest: {result.summary()}")
    assert not untested(result, files=SUITE_FILES, refdev=True), output


def test_the_installed_harness_tests_the_kernels_mtty_sample(
    host: Host, record_property: RecordProperty
) -> None:
    try:
        module = build_vendor_module(host.image, source=sample_source("mtty", "bookworm"))
    except (SampleError, VendorModuleError) as err:
        pytest.fail(str(err), pytrace=False)
    # The parent is inferred from the type; mtty's known bugs are expected failures.
    options = "--mdev-type mtty-2 --known-failures mtty"
    status, output, junit = _suite_on_host(host, module, options, record_property)
    assert status == 0, f"mtty did more than its known bugs (exit {status}):\n{output}"
    result = read_suite_junit(junit)
    print(f"mtty, --target local in the guest: {result.summary()}")
    assert "known bugs (--known-failures, xfailed)" in output, output
    assert not untested(result, files=SUITE_FILES, refdev=False), output
