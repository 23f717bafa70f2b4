# SPDX-License-Identifier: MIT
"""`vfio-harness run`: the conformance suite, end to end, with reports.

It builds or reuses each kernel's image and our module first (with progress), then runs
pytest over the suite (tests/uapi: harness.core.resources finds it) with the plugin: every
test runs in a guest of each --kernel (or on this host with --target local), and the results
land in a reports directory: JUnit XML, KTAP, and the console log of every VM.

Kernels built from source: `--kernel debug` (a recipe in vm_images/kernels/) is built or
brought up to date before pytest starts; `--kernel-tree PATH [--config-fragment F ...]` builds
a clean tree of yours with base.config and the fragments (harness.kernel.build, out of tree
in the cache, so the next run recompiles only what changed) and runs the suite on it, on the
default image's root filesystem. Our module is built against such a kernel's build tree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.cli_errors import UsageError, UserError
from harness.commands import pytest_args
from harness.commands.child import run_to_end
from harness.commands.preflight import PROFILE_FILE, check_device
from harness.commands.run_options import check_options, expected_capabilities
from harness.commands.run_prepare import Prepared, prepare, progress, recipe_builds
from harness.core.cache import cache_root

SUITE_ENV = "HARNESS_SUITE"
DEFAULT_KERNEL = "bookworm"
RESULTS_FILE = "results.json"
VM_FOOTPRINT = 3 << 29  # 1.5 GiB: a guest's 1 GiB and QEMU's own, a VM of -n auto
HTML_FILE = "report.html"
COVERAGE_DIR = "coverage"
LATEST = "latest"  # the default reports folder's link to the last run
REPORTS_ROOT = "vfio-harness-reports"
REPORT_FILES = ("junit.xml", "results.ktap", RESULTS_FILE, HTML_FILE, "verdicts.json",
                "profile.json")  # fmt: skip
PYTEST_CACHE = "pytest"  # pytest's cache_dir (--lf, --ff), in the harness's cache


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run the VFIO UAPI conformance suite in VMs (or here) and write reports",
        description="Anything after -- goes to pytest as is (e.g. -- -k dma -x).",
    )
    run.add_argument(
        "--kernel",
        default=None,
        help="comma-separated image recipes (bookworm, trixie, sid, all), kernel recipes "
        "(debug: built from source) or the path of a kernel you built (default: "
        f"{DEFAULT_KERNEL}, unless --kernel-tree is given)",
    )
    run.add_argument(
        "--kernel-tree",
        type=Path,
        metavar="PATH",
        help="build this clean kernel source tree (out of tree, cached) with base.config and "
        "any --config-fragment, and run the suite on it (besides any --kernel)",
    )
    run.add_argument(
        "--config-fragment",
        action="append",
        default=[],
        metavar="F",
        help="with --kernel-tree: a config fragment merged after base.config, a name in "
        "vm_images/kernels/ (e.g. debug) or a path (repeatable)",
    )
    run.add_argument(
        "--target",
        choices=("vm", "local"),
        default="vm",
        help="run in disposable VMs (default) or on this host's devices",
    )
    run.add_argument(
        "-n",
        "--workers",
        type=workers_arg,
        default=1,
        help="parallel VMs per run (default 1; auto: one per core, as memory allows)",
    )
    run.add_argument("--reports", type=Path, default=None, help="where reports go")
    run.add_argument("--mdev-type", help="mdev type to test (default: our module's small type)")
    run.add_argument("--mdev-parent", help="parent device of --mdev-type")
    run.add_argument("--mdev-uuid", help="an existing mdev device to test")
    run.add_argument("--vendor-module", type=Path, help="load this .ko instead of ours")
    run.add_argument(
        "--vendor-src", type=Path, metavar="DIR", help="build this driver source instead of kmod/"
    )
    run.add_argument(
        "--vendor-sample",
        choices=("mtty", "mdpy", "mbochs"),
        help="build the kernel's own sample driver instead of kmod/, from the linux-source of "
        "each kernel's Debian release (a driver we did not write, to try the suite on)",
    )
    run.add_argument(
        "--known-failures",
        metavar="FILE",
        help="the driver's known bugs (TOML; a name is tests/uapi/known/NAME.toml, e.g. mtty): "
        "their failures are expected, anything else must pass",
    )
    run.add_argument(
        "--module-faults",
        type=int,
        default=0,
        metavar="BITS",
        help="test the suite itself against our module's fault-injection build (kmod/faults.h)",
    )
    run.add_argument(
        "--expect",
        metavar="CAPS",
        help="comma-separated capabilities the driver must offer (e.g. mmap,intx,msi,reset,"
        "migration): a test that needs a missing one fails instead of skipping",
    )
    run.add_argument(
        "--firmware",
        choices=("direct", "uefi", "secureboot"),
        default="direct",
        help="how guests boot: direct (QEMU loads the kernel; default), uefi (OVMF, Debian's "
        "shim and GRUB, the image's signed kernel), secureboot (the same with Secure Boot: "
        "the module is signed, and its certificate enrolled in shim's MokList)",
    )
    run.add_argument(
        "--signing-key",
        type=Path,
        metavar="PEM",
        help="with --firmware "
        "secureboot: sign the module with this key instead of the harness's own",
    )
    run.add_argument(
        "--signing-cert",
        type=Path,
        metavar="CERT",
        help="the certificate of --signing-key (PEM or DER)",
    )
    run.add_argument(
        "--coverage",
        action="store_true",
        help="report which lines of the driver (ours, or --vendor-src) and of drivers/vfio/ "
        "the suite ran: per file, an lcov tracefile and HTML pages in the reports folder; "
        "needs a kernel with gcov (--kernel debug, or a --kernel-tree with the debug fragments)",
    )
    run.add_argument(
        "--shard",
        metavar="K/N",
        help="run the K-th of N stable parts of the tests x kernels (vfio-harness merge joins "
        "the parts' reports)",
    )
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    run.set_defaults(handler=run_suite)


def workers_arg(value: str) -> int:
    """-n N, or auto: one VM per core, as many as the memory available now holds."""
    if value != "auto":
        try:
            return int(value)  # check_options refuses less than 1
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r}: a number, or auto") from None
    cores = len(os.sched_getaffinity(0))
    available = _mem_available()
    if available is None:
        return cores
    return max(1, min(cores, available // VM_FOOTPRINT))


def _mem_available() -> int | None:
    """MemAvailable (free memory plus what the page cache would give back), in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def suite_dir() -> Path:
    """The suite: $HARNESS_SUITE, the installed package's copy or the checkout's tests/uapi."""
    from harness.core.resources import SUITE

    return SUITE.path(UserError)


def suite_rootdir(suite: Path) -> Path:
    """pytest's rootdir for the suite: the directory its tests/ package is in (a checkout, or
    the package's bundle), so test ids read tests/uapi/... wherever the suite comes from."""
    return suite.parents[1]


def build_kernel_tree(path: Path, fragments: list[str]) -> Path:
    """The build directory of the user's tree (harness.kernel.build.build_user_tree): a path
    that is no clean kernel tree, or a fragment that is not there, is a usage error."""
    from harness.kernel.build import (
        KernelBuildError,
        build_user_tree,
        resolve_fragments,
        user_kernel_tree,
    )
    from harness.kernel.fragments import ConfigMismatchError, with_base

    try:
        tree = user_kernel_tree(path)
        resolve_fragments(with_base(fragments))
    except KernelBuildError as exc:
        raise UsageError(str(exc)) from None
    try:
        return build_user_tree(tree, fragments, progress=progress)
    except (KernelBuildError, ConfigMismatchError) as exc:
        raise UserError(str(exc)) from None


def tree_commit(tree: Path) -> str | None:
    """The commit a kernel tree is at ("-dirty" when it has changes), if it is a git checkout."""

    def git(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(tree), *argv], check=False, capture_output=True, text=True
        )

    try:
        head = git("rev-parse", "--verify", "HEAD")
        if head.returncode != 0:
            return None
        dirty = git("diff", "--quiet", "HEAD").returncode != 0
    except OSError:  # no git installed
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def kernel_spec(args: argparse.Namespace, tree_build: Path | None) -> str:
    """--kernel's value for pytest: the --kernel names, then the --kernel-tree build."""
    kernels = [args.kernel] if args.kernel else []
    if tree_build is not None:
        kernels.append(str(tree_build))
    return ",".join(kernels) or DEFAULT_KERNEL


def pytest_command(
    args: argparse.Namespace, suite: Path, reports: Path, kernels: str = DEFAULT_KERNEL
) -> list[str]:
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    try:
        given = pytest_args.split(
            list(extra), cwd=Path.cwd(), rootdir=suite_rootdir(suite), suite=suite
        )
    except pytest_args.SelectorError as exc:
        raise UsageError(str(exc)) from None
    command = [sys.executable, "-m", "pytest", *(given.selectors or [str(suite)])]
    # --lf and --ff need pytest's cache: in ours, as the suite may be read-only (installed).
    command += ["-o", f"cache_dir={cache_root() / PYTEST_CACHE}"]
    command += [f"--rootdir={suite_rootdir(suite)}", f"--guest-suite={suite}"]
    command += [f"--junitxml={reports / 'junit.xml'}", f"--ktap={reports / 'results.ktap'}"]
    command.append(f"--verdicts={reports / 'verdicts.json'}")
    command.append(f"--results={reports / RESULTS_FILE}")
    command.append(f"--target={args.target}")
    if args.target == "vm":
        command.append(f"--kernel={kernels}")
    if args.workers > 1:
        command += ["-n", str(args.workers)]
    for option in ("mdev_type", "mdev_parent", "mdev_uuid"):
        value = getattr(args, option)
        if value:
            command.append(f"--{option.replace('_', '-')}={value}")
    if args.vendor_module:
        command.append(f"--vendor-module={args.vendor_module.resolve()}")
    elif args.vendor_src:
        command.append(f"--vendor-src={args.vendor_src.resolve()}")
    elif args.vendor_sample:
        command.append(f"--vendor-sample={args.vendor_sample}")
    if args.known_failures:
        known = Path(args.known_failures).expanduser()
        command.append(f"--known-failures={known.resolve() if known.exists() else known}")
    if args.module_faults:
        command.append(f"--module-faults={args.module_faults}")
    if args.expect:
        command.append(f"--expect={args.expect}")
    command += firmware_options(args)
    command += report_options(args, reports)
    return command + list(given.options)


def report_options(args: argparse.Namespace, reports: Path) -> list[str]:
    """--shard and --coverage-dir, for pytest."""
    options = [f"--shard={args.shard}"] if args.shard else []
    if args.coverage:
        options.append(f"--coverage-dir={reports / COVERAGE_DIR}")
    return options


def firmware_options(args: argparse.Namespace) -> list[str]:
    """--firmware and the signing identity, for pytest."""
    options = [f"--firmware={args.firmware}"] if args.firmware != "direct" else []
    for option in ("signing_key", "signing_cert"):
        value = getattr(args, option)
        if value is not None:
            options.append(f"--{option.replace('_', '-')}={value.expanduser().resolve()}")
    return options


def new_reports_dir(root: Path) -> Path:
    """root/<time>, or root/<time>-N when a run started in the same second."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, number = root / stamp, 1
    while candidate.exists():
        number += 1
        candidate = root / f"{stamp}-{number}"
    return candidate


def clear_reports(reports: Path) -> None:
    for name in REPORT_FILES:
        (reports / name).unlink(missing_ok=True)
    shutil.rmtree(reports / COVERAGE_DIR, ignore_errors=True)  # else its raw sets would add up


def write_html_report(reports: Path) -> Path | None:
    """report.html from the run's results.json (None when pytest wrote none)."""
    from harness.report.html import render
    from harness.report.results import ResultsError, load

    try:
        results = load(reports / RESULTS_FILE)
    except ResultsError:
        return None
    path = reports / HTML_FILE
    path.write_text(render(results, title=f"vfio-harness run {reports.name}"))
    return path


def point_latest_at(reports: Path) -> None:
    """<reports folder>/latest -> this run's folder, replaced in one rename."""
    link = reports.parent / LATEST
    scratch = reports.parent / f".{LATEST}.{os.getpid()}"
    scratch.unlink(missing_ok=True)
    scratch.symlink_to(reports.name)
    scratch.replace(link)


def run_suite(args: argparse.Namespace) -> int:
    check_options(args)
    expected = expected_capabilities(args.expect)
    suite = suite_dir()
    reports = (args.reports or new_reports_dir(Path.cwd() / REPORTS_ROOT)).resolve()
    clear_reports(reports)  # a reused --reports folder must not show an earlier run's
    consoles = reports / "consoles"
    consoles.mkdir(parents=True, exist_ok=True)
    kernels = DEFAULT_KERNEL
    prepared: list[Prepared] = []
    commits: dict[str, str] = {}
    if args.target == "vm":
        tree_build = None
        if args.kernel_tree is not None:
            tree_build = build_kernel_tree(args.kernel_tree, args.config_fragment)
            commit = tree_commit(args.kernel_tree)
            if commit is not None:
                from harness.kernel.choice import parse_kernels

                commits[parse_kernels(str(tree_build))[0].id] = commit
        kernels = kernel_spec(args, tree_build)
        prepared = prepare(
            kernels,
            vendor_module=args.vendor_module.expanduser().resolve() if args.vendor_module else None,
            faults=bool(args.module_faults),
            source=args.vendor_src.expanduser().resolve() if args.vendor_src else None,
            sample=args.vendor_sample,
        )
    if args.coverage:
        check_coverage(prepared)
    check_device(args, prepared, reports, expected)
    from harness.kernel.prepare import prepared_env
    from harness.vm.machine import CONSOLE_DIR_ENV

    # pytest boots the recipe kernels built above as they are (no second make).
    env = {**os.environ, CONSOLE_DIR_ENV: str(consoles), **prepared_env(recipe_builds(prepared))}
    if commits:
        from harness.plugin.results import COMMITS_ENV

        env[COMMITS_ENV] = json.dumps(commits)
    started = time.monotonic()
    # pytest runs where the suite's rootdir is, so that test paths after -- read the same
    # (tests/uapi/test_x.py) from a checkout and from the installed package.
    status = run_to_end(
        pytest_command(args, suite, reports, kernels), cwd=suite_rootdir(suite), env=env
    )
    html = write_html_report(reports)
    coverage_lines = report_coverage(reports / COVERAGE_DIR) if args.coverage else []
    if args.reports is None:
        point_latest_at(reports)
    print(
        f"\nvfio-harness run: pytest exited {status} after "
        f"{time.monotonic() - started:.0f} s\n"
        f"  JUnit XML: {reports / 'junit.xml'}\n"
        f"  KTAP:      {reports / 'results.ktap'}\n"
        f"  results:   {reports / RESULTS_FILE} (every test, for vfio-harness compare)\n"
        f"  report:    {html or '(none: pytest wrote no results)'}\n"
        f"  profile:   {reports / PROFILE_FILE} (what the driver offers)\n"
        f"  verdicts:  {reports / 'verdicts.json'} (findings by severity and area)\n"
        f"  consoles:  {consoles} (one log per VM)",
        flush=True,
    )
    if coverage_lines:
        print("\n".join(["", *coverage_lines]), flush=True)
    return status


def check_coverage(prepared: list[Prepared]) -> None:
    """--coverage with no kernel that has gcov is a mistake to tell before the suite runs."""
    from harness.commands.run_prepare import without_gcov

    missing = without_gcov(prepared)
    if prepared and len(missing) == len(prepared):
        raise UsageError(
            f"--coverage: no kernel of this run has gcov (CONFIG_GCOV_KERNEL): "
            f"{', '.join(missing)}; use --kernel debug (or a --kernel-tree built with the "
            "debug fragments)"
        )
    if missing:
        print(
            f"vfio-harness: --coverage: {', '.join(missing)} has no gcov (CONFIG_GCOV_KERNEL): "
            "its VMs add nothing to the coverage",
            file=sys.stderr,
        )


def report_coverage(directory: Path) -> list[str]:
    """The coverage table and what was written (harness.coverage.report), or why none: a
    problem here is told, and does not change the run's exit status."""
    from harness.coverage.report import read_run, table, write_reports

    try:
        coverage = read_run(directory)
        if not coverage.counters:
            return [
                "coverage: no gcov counters were copied from any VM: --coverage needs a kernel "
                "with CONFIG_GCOV_KERNEL, such as --kernel debug",
                *coverage.problems[:5],
            ]
        counted = ", ".join(k for k, n in coverage.counters.items() if n)
        lines = [f"coverage (gcov; lines of code the suite executed on {counted}):"]
        lines += table(coverage)
        without = [kernel for kernel, count in coverage.counters.items() if not count]
        if without:
            lines.append(f"  no counters from {', '.join(without)} (no CONFIG_GCOV_KERNEL)")
        lines += [f"  {problem}" for problem in coverage.problems[:10]]
        if len(coverage.problems) > 10:
            lines.append(f"  ... {len(coverage.problems) - 10} more in coverage/summary.json")
        return lines + [f"  {line}" for line in write_reports(coverage, directory)]
    except (OSError, ValueError, subprocess.SubprocessError) as err:
        return [f"coverage: the report failed: {err}"]
