# SPDX-License-Identifier: MIT
"""`vfio-harness images build` and `vfio-harness vm run`: guest images and throwaway VMs."""

from __future__ import annotations

import argparse
import sys

from harness.cli_errors import UserError

KERNELS = ("bookworm", "trixie", "sid")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    images = commands.add_parser("images", help="build guest images from vm_images/ recipes")
    image_actions = images.add_subparsers(dest="images_action", required=True, metavar="ACTION")
    build = image_actions.add_parser("build", help="build (or reuse from the cache) images")
    build.add_argument(
        "recipes",
        nargs="*",
        default=list(KERNELS),
        help=f"recipe names or .toml paths (default: {' '.join(KERNELS)})",
    )
    build.add_argument("--rebuild", action="store_true", help="ignore the cache")
    build.set_defaults(handler=_images_build)

    vm = commands.add_parser("vm", help="boot a disposable VM")
    vm_actions = vm.add_subparsers(dest="vm_action", required=True, metavar="ACTION")
    run = vm_actions.add_parser("run", help="boot, run one shell command over SSH, throw away")
    run.add_argument("--kernel", default="bookworm", help="recipe name (default: bookworm)")
    run.add_argument("command", help="shell command to run in the guest")
    run.set_defaults(handler=_vm_run)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _images_build(args: argparse.Namespace) -> int:
    from harness.debian import AptError, MirrorNotFoundError
    from harness.vm.images import ImageBuildError, build_image
    from harness.vm.recipe import RecipeError

    for recipe in args.recipes:
        try:
            image = build_image(recipe, rebuild=args.rebuild, progress=_progress)
        except (RecipeError, ImageBuildError, AptError, MirrorNotFoundError) as exc:
            raise UserError(str(exc)) from None
        print(f"{image.manifest.name}: {image.kernel_release} in {image.rootfs.parent}")
    return 0


def _vm_run(args: argparse.Namespace) -> int:
    from harness.vm.images import ImageBuildError, build_image
    from harness.vm.machine import BootError, boot
    from harness.vm.recipe import RecipeError
    from harness.vm.ssh_errors import SshError

    try:
        image = build_image(args.kernel, progress=_progress)
        with boot(image, progress=_progress) as vm:
            _progress(f"accelerator: {vm.accelerator.name} ({vm.accelerator.reason})")
            result = vm.ssh.run(args.command, check=False, timeout=600, on_output=_echo)
            return result.exit_status
    except (RecipeError, ImageBuildError, BootError, SshError) as exc:
        raise UserError(str(exc)) from None


def _echo(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()
