# SPDX-License-Identifier: MIT
"""The vfio-harness pytest plugin (entry point `pytest11: vfio_harness`).

It is loaded by every pytest run in an environment where vfio-harness is installed, so it stays
cheap to import: options, markers, parametrization and the fixtures, which import the VM layer
only when a test asks for a VM.

    pytest --kernel bookworm,trixie,sid -n 3   # each test on each kernel; 3 VMs per kernel
    pytest --kernel ~/linux/                   # a kernel you built (on bookworm's rootfs)

Guest tests (harness.plugin.suite_run): the files under `--guest-suite DIR` (default the ini
value `guest_suites`, `tests/uapi`) or marked `guest` are collected on the host but run in a
guest runner (harness.plugin.guest_runner) in this process's VM of each `--kernel`, with the
vendor module loaded (ours from kmod/, or `--vendor-module PATH.ko`, or `--vendor-src DIR`);
`--target local` runs them in this process instead, on a host that has the device. Either way
each test's new kernel log lines and taint are checked, and a splat fails the test.

The suite's contract, for its conftest (guest and host alike): these environment variables
are set when the options are given, in the host's pytest process (and its xdist workers) and
in every guest runner:

    HARNESS_MDEV_TYPE    --mdev-type     the mdev type to create the device of
    HARNESS_MDEV_PARENT  --mdev-parent   the parent device (a name under /sys/class/mdev_bus)
    HARNESS_MDEV_UUID    --mdev-uuid     an existing mdev device to use as it is
    HARNESS_TARGET       --target        always set: "vm" or "local"

Unset variables mean "choose yourself" (in a VM: our reference device's types). The guest
runner runs as root with PYTHONPATH holding the guest-safe harness (uapi, mdev, refdev), the
suite pushed with its paths as under the host's rootdir; it does not see host-only options.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from harness.firmware import FIRMWARE_HELP, Firmware
from harness.kernel.choice import (
    DEFAULT_KERNELS,
    KernelChoice,
    KernelChoiceError,
    parse_kernels,
)
from harness.plugin import guest_items
from harness.plugin.fixtures import VM_FIXTURES, fresh_vm, vm, vm_kernel, vm_pool
from harness.plugin.policy import REQUIRE_VM_ENV
from harness.plugin.suite_run import SuiteRun
from harness.plugin.verdicts import Verdicts

__all__ = ["fresh_vm", "vm", "vm_kernel", "vm_pool"]

KERNEL_ENV = "HARNESS_KERNEL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vfio-harness")
    group.addoption(
        "--require-vm",
        action="store_true",
        default=False,
        help=f"a missing QEMU, image or module fails the test instead of skipping it "
        f"(same as {REQUIRE_VM_ENV}=1)",
    )
    group.addoption(
        "--kernel",
        default=None,
        metavar="K[,K...]",
        help="guest kernels for VM tests: image recipes (bookworm, trixie, sid, all) or the "
        f"path of a kernel you built; default ${KERNEL_ENV} or {DEFAULT_KERNELS}",
    )
    group.addoption(
        "--fresh-vm",
        choices=("auto", "restore", "boot"),
        default="auto",
        help="how new VMs start: restored from a saved booted state, made on first use "
        "(auto, the default), only restored, or always cold-booted",
    )
    group.addoption("--vm-memory", type=int, default=1024, metavar="MiB", help="guest memory")
    group.addoption(
        "--firmware", choices=[str(f) for f in Firmware], default="direct", help=FIRMWARE_HELP
    )
    group.addoption(
        "--signing-key",
        default=None,
        metavar="PEM",
        help="with --firmware secureboot: sign the module with this key (and --signing-cert) "
        "instead of the harness's own",
    )
    group.addoption(
        "--signing-cert",
        default=None,
        metavar="CERT",
        help="the certificate (PEM or DER) enrolled in shim's MokList: --signing-key's, or "
        "alone for a module you signed yourself",
    )
    group.addoption(
        "--shard",
        default=None,
        metavar="K/N",
        help="run only the K-th of N stable parts of the tests x kernels (for N hosts or CI "
        "jobs; vfio-harness merge joins their results.json)",
    )
    guest_items.add_options(parser)
    group.addoption(
        "--verdicts",
        default=None,
        metavar="PATH",
        help="also write the findings by kernel, driver, severity and area as JSON to PATH",
    )
    group.addoption(
        "--results",
        default=None,
        metavar="PATH",
        help="also write every test's result and the run's environment as JSON to PATH "
        "(results.json: harness.report.results has the schema)",
    )
    group.addoption(
        "--ktap",
        action="append",
        default=[],
        metavar="PATH",
        help="also write the results as KTAP v1 (one subtest block per kernel) to PATH, or "
        "to standard output with - (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm: needs a booted guest; skipped without one unless VMs are required"
    )
    if config.getoption("--require-vm"):
        # The environment, not config, so that xdist workers and subprocesses see it too.
        os.environ[REQUIRE_VM_ENV] = "1"
    config.pluginmanager.register(VmSummary(), "vfio-harness-vm-summary")
    if not hasattr(config, "workerinput"):  # xdist: the controller sees every report
        json_path = config.getoption("--verdicts")
        verdicts = Verdicts(Path(json_path) if json_path else None)
        config.pluginmanager.register(verdicts, "vfio-harness-verdicts")
    config.addinivalue_line(
        "markers", "guest: a guest test: runs in a VM's guest runner (or --target local)"
    )
    config.addinivalue_line(
        "markers",
        "guest_timeout(seconds): a guest test's own limit, below --guest-timeout (stretched "
        "for TCG the same way): for tests whose failure is a hang",
    )
    os.environ.update(guest_items.mdev_environment(config))  # the suite's contract, see above
    config.pluginmanager.register(SuiteRun(config), "vfio-harness-suite-run")
    ktap = config.getoption("--ktap")
    if ktap and not hasattr(config, "workerinput"):  # xdist: the controller writes it
        from harness.plugin.ktap import KtapCollector

        collector = KtapCollector(ktap, config, _kernel_ids(config))
        config.pluginmanager.register(collector, "vfio-harness-ktap")
    shard = config.getoption("--shard")
    if shard:
        from harness.plugin.shard import Shard, parse_shard

        try:
            config.pluginmanager.register(Shard(*parse_shard(shard)), "vfio-harness-shard")
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    results = config.getoption("--results")
    if results and not hasattr(config, "workerinput"):
        from harness.plugin.results import ResultsCollector

        writer = ResultsCollector(config, Path(results), _kernel_ids(config))
        config.pluginmanager.register(writer, "vfio-harness-results")
    if config.getoption("--kernel") or os.environ.get(KERNEL_ENV):
        config.stash[_KERNELS] = _kernel_choices(config)  # a bad value stops the run at once


_KERNELS = pytest.StashKey[list[KernelChoice]]()


def _kernel_ids(config: pytest.Config) -> list[str]:
    """The ids of the kernels VM tests are collected for (the report writers' groups)."""
    if config.getoption("--target", "vm") != "vm":
        return []
    try:
        return [choice.id for choice in _kernel_choices(config)]
    except pytest.UsageError:
        return []  # said when the tests are parametrized


def _kernel_choices(config: pytest.Config) -> list[KernelChoice]:
    value = config.getoption("--kernel") or os.environ.get(KERNEL_ENV) or DEFAULT_KERNELS
    from harness.images.build import ImageBuildError  # no vm_images/ to check names against

    try:
        return list(parse_kernels(value))
    except (KernelChoiceError, ImageBuildError) as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not any(name in metafunc.fixturenames for name in VM_FIXTURES):
        return
    if "vm_kernel" not in metafunc.fixturenames:
        return
    choices = metafunc.config.stash.get(_KERNELS, None) or _kernel_choices(metafunc.config)
    # Session scope groups a worker's tests by kernel, so its VMs are reused back to back.
    metafunc.parametrize(
        "vm_kernel",
        choices,
        indirect=True,
        ids=[c.id for c in choices],
        scope="session",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in VM_FIXTURES):
            item.add_marker(pytest.mark.vm)


class VmSummary:
    """Which kernels and accelerators the VM tests ran on (from the reports, so xdist works)."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if "accelerator" not in properties:
            return
        key = (str(properties["kernel"]), str(properties["accelerator"]))
        tests = self.outcomes.setdefault(key, {})
        # The worst phase decides: a teardown error fails a test whose call passed.
        if report.failed or (report.skipped and tests.get(report.nodeid) != "failed"):
            tests[report.nodeid] = report.outcome
        elif report.when == "call" or report.nodeid not in tests:
            tests.setdefault(report.nodeid, report.outcome)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.outcomes:
            return
        terminalreporter.section("vfio-harness: results per kernel")
        terminalreporter.write_line(
            f"{'kernel':<28} {'accel':<6} {'passed':>7} {'failed':>7} {'skipped':>8}"
        )
        for (kernel, accelerator), tests in sorted(self.outcomes.items()):
            counts = Counter(tests.values())
            terminalreporter.write_line(
                f"{kernel:<28} {accelerator:<6} {counts['passed']:>7} {counts['failed']:>7} "
                f"{counts['skipped']:>8}"
            )
