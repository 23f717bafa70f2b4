# SPDX-License-Identifier: MIT
"""Issue 19 part 2: mdevctl 1.4.0 in the trixie-libvirt L1 agrees with our sysfs layer.

In a fresh L1 with our module loaded, tests/vm/guest/mdevctl_checks.py runs
harness.mgmt.mdevctl_checks: define (--auto and manual), start, a refused second start, a
device created through sysfs, stop, two module reloads (under the packaged udev rule, then
under a runtime copy calling the installed mdevctl), undefine; after each, sysfs holds exactly
the expected devices and mdevctl's lists and types agree with it. One L1 run serves both tests.

The checks know nothing of our driver: they run again on one we did not write, the kernel's
mtty sample (from the linux-source of the L1's Debian release, built for its kernel like any
vendor's driver), with its parent `mtty` and its types mtty-2 (--auto) and mtty-1 (manual).
A vendor runs them on theirs alone with the suite's options:

    pytest tests/vm/test_mdevctl.py --vendor-src=DIR --mdev-type=TYPE [--mdev-parent=PARENT]

Debian's packaged rule calls /usr/sbin/mdevctl, which the package does not install: while that
program is missing, test_packaged_udev_rule_autostarts is an expected failure; once it exists,
the test has to pass for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.images.build import BuiltImage
from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.kmod.samples import SampleError, sample_source
from harness.mgmt.mdevctl_checks import PACKAGED_RULE_CHECK
from harness.plugin.guest_vm import VendorModule
from tests.vm.l1 import GUEST, GUEST_KO, GuestDriver, libvirt_image, run_in_l1

pytestmark = pytest.mark.vm

GUEST_CHECKS = GUEST / "mdevctl_checks.py"
CHECKS = 9  # every check of harness/mgmt/mdevctl_checks.py run_checks
MDEVCTL_VERSION = "mdevctl 1.4.0"

RecordProperty = Callable[[str, object], None]


# Guest script arguments after MODULE_KO: none for ours.
MTTY_ARGS = ["mtty", "mtty", "mtty-2", "mtty-1"]
VENDOR_OPTIONS = ("--vendor-module", "--vendor-src", "--vendor-sample")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Ours and the mtty sample; only the vendor's driver when one is given (the suite's
    --vendor-module/--vendor-src/--vendor-sample with --mdev-type, and --mdev-parent if
    several parents offer it)."""
    if "driver" in metafunc.fixturenames:
        given = any(metafunc.config.getoption(option) for option in VENDOR_OPTIONS)
        drivers = ["vendor"] if given else ["ours", "mtty"]
        metafunc.parametrize("driver", drivers, scope="module")


def vendor_driver(config: pytest.Config, image: BuiltImage) -> tuple[GuestDriver, list[str]]:
    """The vendor's .ko for the L1's kernel and the guest script's arguments for it: its one
    type is defined both --auto and manual."""
    mdev_type = config.getoption("--mdev-type")
    if not mdev_type:
        pytest.fail("a vendor driver needs --mdev-type: the type mdevctl defines", pytrace=False)
    given = config.getoption("--vendor-module")
    if given:
        ko = Path(given).expanduser().resolve()
        if not ko.is_file():
            pytest.fail(f"--vendor-module {given}: no such file", pytrace=False)
    else:
        sample = config.getoption("--vendor-sample")
        if sample:
            source = sample_source(sample, image.manifest.suite)
        else:
            source = Path(config.getoption("--vendor-src")).expanduser().resolve()
        ko = build_vendor_module(image, source=source)
    name = VendorModule.read(ko).name
    parent = config.getoption("--mdev-parent") or "-"
    return GuestDriver(ko, name), [name, parent, mdev_type, mdev_type]


def sample_driver(image: BuiltImage) -> tuple[GuestDriver, list[str]]:
    source = sample_source("mtty", image.manifest.suite, progress=print)
    return GuestDriver(build_vendor_module(image, source=source), "mtty"), MTTY_ARGS


@pytest.fixture(scope="module")
def l1_run(driver: str, pytestconfig: pytest.Config) -> dict[str, Any]:
    image = libvirt_image()
    started = time.monotonic()
    if driver == "ours":
        report, problems, vm = run_in_l1(image, GUEST_CHECKS, [GUEST_KO], 300)
    else:
        try:
            if driver == "mtty":
                theirs, args = sample_driver(image)
            else:
                theirs, args = vendor_driver(pytestconfig, image)
        except (SampleError, VendorModuleError) as err:
            pytest.fail(f"{driver} for {image.manifest.kernel_release}: {err}", pytrace=False)
        args = [theirs.guest_ko, *args]
        report, problems, vm = run_in_l1(image, GUEST_CHECKS, args, 300, driver=theirs)
    if "setup" in report:  # a driver without the devices the steps need, or no such type
        pytest.fail(
            f"the mdevctl checks could not start on {driver}: {report['setup']}", pytrace=False
        )
    return {
        "report": report,
        "problems": problems,
        "kernel": vm.machine.kernel_release,
        "accelerator": vm.accelerator.name,
        "wall_s": round(time.monotonic() - started, 1),
    }


def test_mdevctl_agrees_with_sysfs(l1_run: dict[str, Any], record_property: RecordProperty) -> None:
    report = l1_run["report"]
    timings = {
        "wall_s": l1_run["wall_s"],
        "l1_checks_s": report.get("wall_s"),
        **report.get("timings", {}),
    }
    for name, value in {"kernel": l1_run["kernel"], "accelerator": l1_run["accelerator"],
                        "mdevctl": report.get("mdevctl_version"), **timings}.items():  # fmt: skip
        record_property(name, value)
    print(f"\nmdevctl: {json.dumps(timings)}")
    print(f"per check (s): {json.dumps(report.get('seconds', {}))}")
    results: dict[str, str] = report.get("results", {})
    failed = {n: why for n, why in results.items() if why != "ok" and n != PACKAGED_RULE_CHECK}
    problems = [f"{name}: {why}" for name, why in failed.items()] + l1_run["problems"]
    problems += [f"cleanup in L1: {why}" for why in report.get("cleanup", [])]
    if report.get("mdevctl_version") != MDEVCTL_VERSION:
        problems.append(f"L1 has {report.get('mdevctl_version')!r}, expected {MDEVCTL_VERSION!r}")
    if len(results) != CHECKS:
        problems.append(f"{len(results)} of {CHECKS} checks ran: {sorted(results)}")
    judged = len(results) - (PACKAGED_RULE_CHECK in results)
    print(f"{judged - len(failed)} of {judged} checks passed here ({PACKAGED_RULE_CHECK} is "
          "judged by test_packaged_udev_rule_autostarts)")  # fmt: skip
    assert not problems, "\n".join(problems)


def test_packaged_udev_rule_autostarts(l1_run: dict[str, Any]) -> None:
    report = l1_run["report"]
    rule = report.get("packaged_rule", {})
    result = report.get("results", {}).get(PACKAGED_RULE_CHECK)
    assert "error" not in rule, f"the packaged udev rule: {rule.get('error')}"
    assert result is not None, f"{PACKAGED_RULE_CHECK} did not run: {report.get('results')}"
    if result == "ok":
        return
    if not rule["program_exists"] and "did not come back" in result:
        pytest.xfail(
            f"Debian's {rule['path']} runs {rule['program']}, which the mdevctl package does "
            f"not install, so --auto devices never start (upstream mdevctl issue #82's "
            f"symptom). {result}"
        )
    pytest.fail(f"{PACKAGED_RULE_CHECK}: {result}", pytrace=False)
