# SPDX-License-Identifier: MIT
"""`vfio-harness compare BASE [NEW]`: what changed between two runs (each a reports directory or
its results.json), or between two kernels of one run (`--kernels A,B`), as a table; exit 1
when anything regressed, so a patch CI job can gate on it:

    vfio-harness compare reports/without-patch reports/with-patch
    vfio-harness compare reports/20261206-101500 --kernels bookworm,debug
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli_errors import UsageError

EXIT_REGRESSED = 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    compare = commands.add_parser(
        "compare",
        help="what changed between two runs, or two kernels of a run (exit 1 on regressions)",
        description="BASE and NEW are reports directories of `vfio-harness run` (or their "
        "results.json). With one run, --kernels names the two kernels to compare.",
    )
    compare.add_argument("base", type=Path, metavar="BASE")
    compare.add_argument("new", type=Path, nargs="?", metavar="NEW")
    compare.add_argument(
        "--kernels",
        metavar="A,B",
        help="the base's kernel and the new side's kernel to pair (default: the kernels both "
        "have, or the one each has)",
    )
    compare.add_argument(
        "--html", type=Path, metavar="FILE", help="also write the comparison as an HTML report"
    )
    compare.set_defaults(handler=_compare)


def results_path(given: Path) -> Path:
    from harness.commands.run import RESULTS_FILE

    path = given / RESULTS_FILE if given.is_dir() else given
    if not path.is_file():
        raise UsageError(f"{given}: no results here (a reports directory of vfio-harness run, "
                         f"or its {RESULTS_FILE})")  # fmt: skip
    return path


def _compare(args: argparse.Namespace) -> int:
    from harness.report.compare import CompareError, compare, render_table
    from harness.report.results import ResultsError, load

    kernels: tuple[str, str] | None = None
    if args.kernels:
        names = args.kernels.split(",")
        if len(names) != 2 or not all(names):
            raise UsageError(f"--kernels {args.kernels}: give two kernels, A,B")
        kernels = (names[0], names[1])
    elif args.new is None:
        raise UsageError("one run: name the two kernels to compare with --kernels A,B")
    try:
        base = load(results_path(args.base))
        new = base if args.new is None else load(results_path(args.new))
        labels = (str(args.base), str(args.new or args.base))
        comparison = compare(base, new, kernels=kernels, labels=labels)
    except (ResultsError, CompareError) as exc:
        raise UsageError(str(exc)) from None
    print(render_table(comparison), end="", flush=True)
    if args.html is not None:
        from harness.report.html import render

        title = f"vfio-harness compare {labels[0]} {labels[1]}"
        args.html.write_text(render(new, comparison, title=title))
        print(f"HTML report: {args.html}", flush=True)
    return EXIT_REGRESSED if comparison.regressions else 0
