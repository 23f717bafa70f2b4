# SPDX-License-Identifier: MIT
"""The `vfio-harness` command: a thin front end over the library's layers.

User mistakes and missing prerequisites end in one `vfio-harness: error: ...` line saying what to
do, never in a traceback; a traceback means a bug in the harness.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from harness import __version__
from harness.cli_errors import UserError
from harness.commands import kmod as kmod_commands
from harness.commands import mdev as mdev_commands
from harness.commands import paths as paths_commands
from harness.commands import run as run_commands
from harness.commands import uapi as uapi_commands
from harness.commands import vm as vm_commands


def _cmd_setup(args: argparse.Namespace) -> int:
    from harness.debian.hostdeps import HostDepsError, ensure

    try:
        installed = ensure(args.profile or ["unit"], install=not args.check)
    except HostDepsError as exc:
        raise UserError(str(exc)) from None
    print("installed: " + " ".join(installed) if installed else "host packages: all present")
    return 0


Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vfio-harness",
        description="Conformance and stress harness for Linux VFIO mediated devices.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run_commands.register(commands)

    setup = commands.add_parser("setup", help="install the Debian packages the harness needs")
    setup.add_argument(
        "--profile", action="append", help="which part's packages (repeatable; default: unit)"
    )
    setup.add_argument("--check", action="store_true", help="only report what is missing")
    setup.set_defaults(handler=_cmd_setup)

    mdev_commands.register(commands)
    kmod_commands.register(commands)
    uapi_commands.register(commands)
    vm_commands.register(commands)
    paths_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as exc:
        print(f"vfio-harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vfio-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
