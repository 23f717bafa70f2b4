# SPDX-License-Identifier: MIT
"""`vfio-harness paths [NAME]`: where the suite, our driver's source, the image recipes and the
cache are, and where each was found (harness.core.resources).

    vfio-harness paths                 # a table, with each one's origin
    pytest "$(vfio-harness paths suite)" --target local   # the installed suite, run directly
"""

from __future__ import annotations

import argparse

from harness.cli_errors import UserError

CACHE = "cache"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from harness.core.resources import RESOURCES

    paths = commands.add_parser(
        "paths",
        help="where the suite, kmod/ sources, image recipes and cache are",
        description="With a NAME, print only that path (for scripts).",
    )
    paths.add_argument("name", nargs="?", choices=(*RESOURCES, CACHE), metavar="NAME")
    paths.set_defaults(handler=_show_paths)


def _cache_origin() -> str:
    import os

    for variable in ("HARNESS_CACHE_DIR", "XDG_CACHE_HOME"):
        if os.environ.get(variable):
            return f"${variable}"
    return "~/.cache"


def _show_paths(args: argparse.Namespace) -> int:
    from harness.core.cache import cache_root
    from harness.core.resources import RESOURCES, ResourceNotFoundError

    rows: list[tuple[str, str, str]] = []
    try:
        for name, resource in RESOURCES.items():
            if args.name in (None, name):
                located = resource.locate()
                rows.append((name, str(located.path), located.origin))
    except ResourceNotFoundError as exc:
        raise UserError(str(exc)) from None
    if args.name in (None, CACHE):
        rows.append((CACHE, str(cache_root()), _cache_origin()))
    if args.name is not None:
        print(rows[0][1])
        return 0
    for name, path, origin in rows:
        print(f"{name:<8} {path}  ({origin})")
    return 0
