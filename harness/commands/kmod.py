# SPDX-License-Identifier: MIT
"""`vfio-harness kmod check|build`: the reference driver's style, and its build per kernel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli_errors import UserError
from harness.kmod.samples import SAMPLES

KERNELS = ("bookworm", "trixie", "sid")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kmod = commands.add_parser("kmod", help="the reference mdev driver in kmod/")
    actions = kmod.add_subparsers(dest="kmod_action", required=True, metavar="ACTION")

    check = actions.add_parser(
        "check",
        help="run the kernel's checkpatch.pl on C files (default: kmod/*.c kmod/*.h)",
        description="checkpatch.pl comes from Debian's linux-source of the host's release "
        "(fetched once into the cache). Exit status 1 when it finds anything.",
    )
    check.add_argument("files", nargs="*", type=Path, help="C sources and headers")
    check.add_argument(
        "--no-strict", dest="strict", action="store_false", help="leave out CHECK-level findings"
    )
    check.add_argument("--suite", help="take checkpatch from this Debian release instead")
    check.add_argument(
        "--ignore", action="append", default=[], metavar="TYPE", help="a type to skip (repeatable)"
    )
    check.set_defaults(handler=_check)

    build = actions.add_parser(
        "build",
        help="build kmod/ for guest kernels with W=1 (cached; warnings are errors)",
    )
    build.add_argument(
        "kernels", nargs="*", default=list(KERNELS), help="image recipes (default: all)"
    )
    build.set_defaults(handler=_build)

    sample = actions.add_parser(
        "sample",
        help="fetch a kernel sample mdev driver (mtty, mdpy, mbochs) as a --vendor-src source",
        description="Prints the source directory (the sample's files and a Kbuild), taken from "
        "Debian's linux-source of that release, for `vfio-harness run --vendor-src DIR`.",
    )
    sample.add_argument("name", choices=SAMPLES, help="mtty, mdpy or mbochs")
    sample.add_argument("--suite", default="bookworm", help="Debian release (default bookworm)")
    sample.set_defaults(handler=_sample)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check(args: argparse.Namespace) -> int:
    from harness.debian import AptError, MirrorNotFoundError, PackageUnpackError
    from harness.kmod.checkpatch import CheckpatchError, fetch_checkpatch, run_checkpatch
    from harness.kmod.module_cache import VendorModuleError, kmod_dir

    try:
        files = args.files or _kmod_sources(kmod_dir())
        tool = fetch_checkpatch(args.suite, progress=_progress)
        report = run_checkpatch(files, args.strict, ignore=args.ignore, checkpatch=tool)
    except (
        CheckpatchError, VendorModuleError, AptError, MirrorNotFoundError, PackageUnpackError
    ) as exc:  # fmt: skip
        raise UserError(str(exc)) from None
    for message in report.messages:
        print(message)
        for line in message.context:
            print(f"    {line}")
    print(f"{tool.label}: {report.summary().splitlines()[0].removeprefix('checkpatch: ')}")
    return 0 if report.clean else 1


def _kmod_sources(directory: Path) -> list[Path]:
    cwd = Path.cwd()
    found = sorted(directory.glob("*.c")) + sorted(directory.glob("*.h"))
    # Shown relative to where the command runs, when they are below it.
    return [p.relative_to(cwd) if p.is_relative_to(cwd) else p for p in found]


def _build(args: argparse.Namespace) -> int:
    from harness.debian import AptError, MirrorNotFoundError
    from harness.images.build import ImageBuildError, build_image
    from harness.images.recipe import RecipeError
    from harness.kmod.build_env import BuildEnvError
    from harness.kmod.module_cache import VendorModuleError, build_vendor_module

    for kernel in args.kernels:
        try:
            image = build_image(kernel, progress=_progress)
            module = build_vendor_module(image, _progress)
        except (
            VendorModuleError, BuildEnvError, ImageBuildError, RecipeError, AptError,
            MirrorNotFoundError,
        ) as exc:  # fmt: skip
            raise UserError(str(exc)) from None
        print(f"{kernel}: {image.kernel_release}: {module}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from harness.debian import AptError, MirrorNotFoundError, PackageUnpackError
    from harness.kmod.samples import SampleError, sample_source

    try:
        print(sample_source(args.name, args.suite, progress=_progress))
    except (SampleError, AptError, MirrorNotFoundError, PackageUnpackError) as exc:
        raise UserError(str(exc)) from None
    return 0
