# SPDX-License-Identifier: MIT
"""`vfio-harness images build` and `vfio-harness vm boot|ssh|run|list`: images and VMs."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from harness.cli_errors import UsageError, UserError
from harness.firmware import FIRMWARE_HELP, Firmware, FirmwareError

if TYPE_CHECKING:
    from harness.vm.machine import Vm

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

    vm = commands.add_parser("vm", help="disposable VMs: boot one, get a shell, run a command")
    vm_actions = vm.add_subparsers(dest="vm_action", required=True, metavar="ACTION")

    boot = vm_actions.add_parser("boot", help="start a VM and keep it until Ctrl-C")
    _vm_options(boot)
    boot.set_defaults(handler=_vm_boot)

    ssh = vm_actions.add_parser(
        "ssh",
        help="a shell (or a command) in a VM from `vm boot`",
        usage="%(prog)s [NAME] [-- COMMAND ...]",
        description="NAME (see `vm list`) is needed only when several VMs run.",
    )
    ssh.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ssh.set_defaults(handler=_vm_ssh)

    listing = vm_actions.add_parser("list", help="VMs started with `vm boot` that still run")
    listing.set_defaults(handler=_vm_list)

    run = vm_actions.add_parser("run", help="start a VM, run one shell command, throw it away")
    _vm_options(run)
    run.add_argument(
        "command",
        nargs="+",
        help="shell command to run in the guest: one quoted string, or words after -- "
        "(`vm run -- mokutil --sb-state`)",
    )
    run.set_defaults(handler=_vm_run)


def _vm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kernel",
        default="bookworm",
        help="an image recipe (bookworm, trixie, sid), a kernel recipe (debug: built from "
        "source first) or the path of a kernel you built (default: bookworm)",
    )
    parser.add_argument(
        "--fresh",
        choices=("auto", "restore", "boot"),
        default="auto",
        help="restore a saved booted state (made on first use: auto), or cold-boot",
    )
    parser.add_argument("--memory", type=int, default=1024, metavar="MiB")
    parser.add_argument(
        "--firmware",
        choices=[str(f) for f in Firmware],
        default=str(Firmware.DIRECT),
        help=FIRMWARE_HELP,
    )
    parser.add_argument(
        "--signing-cert",
        type=Path,
        metavar="CERT",
        help="with --firmware secureboot: enroll this certificate (PEM or DER) in shim's "
        "MokList instead of the harness's own",
    )


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _images_build(args: argparse.Namespace) -> int:
    from harness.debian import AptError, MirrorNotFoundError
    from harness.images.build import ImageBuildError, build_image
    from harness.images.recipe import RecipeError

    for recipe in args.recipes:
        try:
            image = build_image(recipe, rebuild=args.rebuild, progress=_progress)
        except RecipeError as exc:
            raise UsageError(str(exc)) from None
        except (ImageBuildError, AptError, MirrorNotFoundError) as exc:
            raise UserError(str(exc)) from None
        print(f"{image.manifest.name}: {image.kernel_release} in {image.rootfs.parent}")
    return 0


def _start(args: argparse.Namespace) -> Vm:
    """The VM `--kernel` asks for; every way that can fail is a one-line user error."""
    from harness.debian import AptError, MirrorNotFoundError
    from harness.debian.packages import PackageUnpackError
    from harness.images.build import ImageBuildError
    from harness.images.recipe import RecipeError
    from harness.kernel.choice import KernelChoiceError, parse_kernels
    from harness.kernel.prepare import KERNEL_ERRORS
    from harness.kmod.signing import SigningError, mok_for, signing_identity
    from harness.plugin.pool import VmPool
    from harness.qemu.qmp import QmpError
    from harness.ssh.errors import SshError
    from harness.vm.machine import BootError
    from harness.vm.saved_state import SavedStateError

    try:
        choices = parse_kernels(args.kernel)
        if len(choices) != 1:
            raise UsageError("--kernel: give one kernel here")
        firmware = Firmware(args.firmware)
        cert = args.signing_cert.expanduser() if args.signing_cert else None
        mok = mok_for(firmware, signing_identity(None, cert) if cert else None)
        pool = VmPool(
            fresh=args.fresh,
            memory_mib=args.memory,
            progress=_progress,
            firmware=firmware,
            mok=mok,
        )
        return pool.start(choices[0])
    except (KernelChoiceError, RecipeError, ImageBuildError, AptError, MirrorNotFoundError,
            BootError, QmpError, SavedStateError, SshError, FirmwareError, SigningError,
            PackageUnpackError) as exc:  # fmt: skip
        raise UserError(str(exc)) from None
    except KERNEL_ERRORS as exc:  # a kernel recipe that does not build, a kernel that won't do
        raise UserError(str(exc)) from None
    except FileNotFoundError as exc:
        raise UserError(
            f"{exc.filename} not found: run `vfio-harness setup --profile vm`"
        ) from None


def _vm_run(args: argparse.Namespace) -> int:
    from harness.ssh.errors import SshError

    with _start(args) as vm:
        _progress(f"accelerator: {vm.accelerator.name} ({vm.accelerator.reason})")
        try:
            result = vm.ssh.run(
                guest_command(args.command), check=False, timeout=600, on_output=_echo
            )
        except SshError as exc:
            raise UserError(str(exc)) from None
        return result.exit_status


def _vm_boot(args: argparse.Namespace) -> int:
    from harness.vm.sessions import publish

    def stop(_signo: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Started in the background by a script, SIGINT may arrive ignored: Ctrl-C must still stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    with _start(args) as vm:
        session = publish(vm)
        how = "restored" if vm.times.how == "restore" else "booted"
        print(
            f"{session.label}: Linux {session.kernel_release} {how} in "
            f"{vm.times.boot_to_ready_s:.1f} s [{vm.accelerator.name}: {vm.accelerator.reason}]\n"
            f"  shell:    vfio-harness vm ssh {session.name}\n"
            f"  command:  vfio-harness vm ssh {session.name} -- uname -a\n"
            f"  openssh:  {session.openssh_command()}\n"
            f"  console:  {vm.spec.console_log}\n"
            "Ctrl-C here (or poweroff in the guest) stops and deletes the VM.",
            flush=True,
        )
        try:
            while vm.alive():
                time.sleep(0.5)
            print(f"{session.label}: the guest powered off", file=sys.stderr)
        except KeyboardInterrupt:
            print(f"\n{session.label}: stopping", file=sys.stderr)
    return 0


def _vm_ssh(args: argparse.Namespace) -> int:
    from harness.ssh.errors import SshError
    from harness.ssh.keys import load_run_key
    from harness.ssh.session import connect
    from harness.ssh.shell import interactive_shell
    from harness.vm.sessions import SessionNotFoundError, find_session

    name, remote = split_ssh_words(args.words)
    try:
        session = find_session(name)
        key = load_run_key(Path(session.key))
        with connect("127.0.0.1", session.ssh_port, identity=key, host_key=session.host_key) as ssh:
            if remote:
                result = ssh.run(" ".join(remote), timeout=3600, check=False, on_output=_echo)
                return result.exit_status
            if not sys.stdin.isatty():
                raise UserError("stdin is not a terminal: pass a command (`vm ssh NAME -- CMD`)")
            return interactive_shell(ssh)
    except (SessionNotFoundError, SshError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None


def guest_command(words: list[str]) -> str:
    """One word is a shell command as it is (`vm run 'uname -a; ls'`); several are quoted
    (`vm run -- mokutil --sb-state`)."""
    return words[0] if len(words) == 1 else shlex.join(words)


def split_ssh_words(words: list[str]) -> tuple[str | None, list[str]]:
    """`[NAME] [-- COMMAND...]` -> (NAME or None, COMMAND words)."""
    if "--" in words:
        at = words.index("--")
        before, command = words[:at], words[at + 1 :]
    else:
        before, command = words, []
    if len(before) > 1:
        raise UsageError(f"vm ssh: one VM name at most, then -- COMMAND (got {' '.join(before)})")
    return (before[0] if before else None), command


def _vm_list(_args: argparse.Namespace) -> int:
    from harness.vm.sessions import live_sessions

    sessions = live_sessions()
    if not sessions:
        print("no running VMs (start one with `vfio-harness vm boot`)")
    for s in sessions:
        print(f"{s.name}  {s.label:<10} {s.kernel_release:<24} {s.accelerator}  port {s.ssh_port}")
    return 0


def _echo(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()
