# SPDX-License-Identifier: MIT
"""`vfio-harness run`: the conformance suite, end to end, with reports.

It builds or reuses each kernel's image and our module first (with progress), then runs
pytest over the suite (tests/uapi of the checkout, or $HARNESS_SUITE) with the plugin: every
test runs in a guest of each --kernel (or on this host with --target local), and the results
land in a reports directory: JUnit XML, KTAP, and the console log of every VM.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from harness.cli_errors import UserError

SUITE_ENV = "HARNESS_SUITE"
DEFAULT_KERNEL = "bookworm"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the VFIO UAPI conformance suite in VMs (or here) and write reports",
        description="Anything after -- goes to pytest as is (e.g. -- -k dma -x).",
    )
    run.add_argument(
        "--kernel",
        default=DEFAULT_KERNEL,
        help="comma-separated image recipes (bookworm, trixie, sid, all) or the path of a "
        f"kernel you built (default: {DEFAULT_KERNEL})",
    )
    run.add_argument(
        "--target",
        choices=("vm", "local"),
        default="vm",
        help="run in disposable VMs (default) or on this host's devices",
    )
    run.add_argument("-n", "--workers", type=int, default=1, help="parallel VMs (default 1)")
    run.add_argument("--reports", type=Path, default=None, help="where reports go")
    run.add_argument("--mdev-type", help="mdev type to test (default: our module's small type)")
    run.add_argument("--mdev-parent", help="parent device of --mdev-type")
    run.add_argument("--mdev-uuid", help="an existing mdev device to test")
    run.add_argument("--vendor-module", type=Path, help="load this .ko instead of ours")
    run.add_argument(
        "--module-faults",
        type=int,
        default=0,
        metavar="BITS",
        help="test the suite itself against our module's fault-injection build (kmod/faults.h)",
    )
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(handler=run_suite)


def checkout_root() -> Path:
    return Path(__file__).resolve().parents[2]


def suite_dir() -> Path:
    """$HARNESS_SUITE, else tests/uapi next to the harness sources or in this directory."""
    explicit = os.environ.get(SUITE_ENV)
    candidates = [Path(explicit)] if explicit else []
    candidates += [checkout_root() / "tests" / "uapi", Path.cwd() / "tests" / "uapi"]
    for candidate in candidates:
        if (candidate / "conftest.py").is_file():
            return candidate.resolve()
    raise UserError(
        f"no conformance suite (tests/uapi/conftest.py) next to the harness sources or in "
        f"{Path.cwd()}: run from the vfio-harness checkout or set {SUITE_ENV}"
    )


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def prepare(kernels: str, build_module: bool) -> None:
    """Images (and our module) for every kernel, before pytest: progress shows, errors stop."""
    from harness.debian import AptError, MirrorNotFoundError
    from harness.kmod.module_cache import VendorModuleError, build_vendor_module
    from harness.plugin.kernels import KernelChoiceError, parse_kernels
    from harness.vm.images import ImageBuildError, build_image
    from harness.vm.recipe import RecipeError

    try:
        for choice in parse_kernels(kernels):
            image = build_image(choice.recipe, progress=_progress)
            if build_module and choice.custom_path is None:
                build_vendor_module(image, _progress)
    except (KernelChoiceError, RecipeError, ImageBuildError, AptError, MirrorNotFoundError,
            VendorModuleError) as exc:  # fmt: skip
        raise UserError(str(exc)) from None


def pytest_command(args: argparse.Namespace, suite: Path, reports: Path) -> list[str]:
    command = [sys.executable, "-m", "pytest", str(suite), "-p", "no:cacheprovider"]
    command += [f"--junitxml={reports / 'junit.xml'}", f"--ktap={reports / 'results.ktap'}"]
    command.append(f"--target={args.target}")
    if args.target == "vm":
        command.append(f"--kernel={args.kernel}")
    if args.workers > 1:
        command += ["-n", str(args.workers)]
    for option in ("mdev_type", "mdev_parent", "mdev_uuid"):
        value = getattr(args, option)
        if value:
            command.append(f"--{option.replace('_', '-')}={value}")
    if args.vendor_module:
        command.append(f"--vendor-module={args.vendor_module.resolve()}")
    if args.module_faults:
        command.append(f"--module-faults={args.module_faults}")
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return command + list(extra)


def run_suite(args: argparse.Namespace) -> int:
    suite = suite_dir()
    checkout = suite.parents[1]
    # Recipes and our driver's source come from the suite's checkout (not package data).
    os.environ.setdefault("HARNESS_VM_IMAGES", str(checkout / "vm_images"))
    os.environ.setdefault("HARNESS_KMOD_SRC", str(checkout / "kmod"))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    reports = (args.reports or Path.cwd() / "vfio-harness-reports" / stamp).resolve()
    consoles = reports / "consoles"
    consoles.mkdir(parents=True, exist_ok=True)
    if args.target == "vm":
        prepare(args.kernel, build_module=args.vendor_module is None)
    from harness.vm.machine import CONSOLE_DIR_ENV

    env = {**os.environ, CONSOLE_DIR_ENV: str(consoles)}
    started = time.monotonic()
    # pytest runs from the checkout the suite is in: its rootdir, recipes and markers.
    result = subprocess.run(
        pytest_command(args, suite, reports), cwd=checkout, env=env, check=False
    )
    print(
        f"\nvfio-harness run: pytest exited {result.returncode} after "
        f"{time.monotonic() - started:.0f} s\n"
        f"  JUnit XML: {reports / 'junit.xml'}\n"
        f"  KTAP:      {reports / 'results.ktap'}\n"
        f"  consoles:  {consoles} (one log per VM)",
        flush=True,
    )
    return result.returncode
