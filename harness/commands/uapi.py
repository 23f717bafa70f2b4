# SPDX-License-Identifier: MIT
"""`vfio-harness uapi check-headers`: compare the bindings with a kernel's UAPI headers."""

from __future__ import annotations

import argparse

from harness.cli_errors import UserError
from harness.uapi.layout_check import HeaderSet, LayoutCheckError, check


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    uapi = commands.add_parser("uapi", help="the VFIO/iommufd bindings")
    actions = uapi.add_subparsers(dest="uapi_action", required=True, metavar="ACTION")
    headers = actions.add_parser(
        "check-headers",
        help="check every struct layout, ioctl number and constant against UAPI headers",
        description="Compiles a C program against the headers (e.g. `make headers_install` "
        "output of your tree) and compares it with the Python bindings.",
    )
    headers.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="DIR",
        help="include dir searched before /usr/include (repeatable; default: the host's headers)",
    )
    headers.add_argument("--name", default="headers", help="label for the report")
    headers.set_defaults(handler=_check_headers)


def _check_headers(args: argparse.Namespace) -> int:
    try:
        report = check(HeaderSet.from_include_dirs(args.name, args.include))
    except (LayoutCheckError, OSError) as exc:
        raise UserError(str(exc)) from None
    print(report.summary())
    for mismatch in report.mismatches:
        print(f"  MISMATCH {mismatch}")
    return 0 if report.ok else 1
