# SPDX-License-Identifier: MIT
"""The `vfio-harness` command: a thin front end over the library's layers.

User mistakes and missing prerequisites end in one `vfio-harness: error: ...` line saying what to
do, never in a traceback; a traceback means a bug in the harness.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, cast

from harness import __version__
from harness.cli_errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError
from harness.commands import compare as compare_commands
from harness.commands import fuzz as fuzz_commands
from harness.commands import kmod as kmod_commands
from harness.commands import lava as lava_commands
from harness.commands import mdev as mdev_commands
from harness.commands import merge as merge_commands
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


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors exit with EXIT_USAGE, not 2 (pytest's "interrupted")."""

    argv: Sequence[str] = ()  # what is being parsed, for the hint below

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        hint = ""
        if "unrecognized arguments" in message and self.argv[:1] == ["run"]:
            hint = " (pytest's options go after --, e.g. vfio-harness run -- -k dma)"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint}\n")


def build_parser() -> _Parser:
    parser = _Parser(
        prog="vfio-harness",
        description="Conformance and stress harness for Linux VFIO mediated devices.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Subcommands are _Parser too (argparse makes them of the parent's class).
    commands = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )

    run_commands.register(commands)
    compare_commands.register(commands)
    merge_commands.register(commands)
    lava_commands.register(commands)
    fuzz_commands.register(commands)

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
    parser = build_parser()
    parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(parser.argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as exc:
        print(f"vfio-harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vfio-harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
