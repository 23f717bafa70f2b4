# SPDX-License-Identifier: MIT
"""`vfio-harness merge OUT PART...`: the results of a run split with --shard over hosts or CI
jobs, joined into OUT/results.json and OUT/report.html (each PART a reports directory or its
results.json). Exit 0 when every shard of the split is there, whatever the tests did (the
merged results.json has the run's exit status; `vfio-harness compare` gates on changes), and
1 when some are missing (they are named, and recorded in the merged results)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli_errors import UsageError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    merge = commands.add_parser(
        "merge",
        help="join the results of --shard runs into one results.json and report.html",
    )
    merge.add_argument("out", type=Path, metavar="OUT", help="the merged reports directory")
    merge.add_argument("parts", type=Path, nargs="+", metavar="PART")
    merge.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    from harness.commands.compare import results_path
    from harness.commands.run import HTML_FILE, RESULTS_FILE
    from harness.report.html import render
    from harness.report.merge import MergeError, merge
    from harness.report.results import ResultsError, load

    try:
        parts = [load(results_path(part)) for part in args.parts]
        merged = merge(parts)
    except (ResultsError, MergeError) as exc:
        raise UsageError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    merged.write(args.out / RESULTS_FILE)
    (args.out / HTML_FILE).write_text(render(merged, title=f"vfio-harness merge {args.out.name}"))
    print(f"merged {len(parts)} parts, {len(merged.tests)} tests: {args.out / RESULTS_FILE}")
    print(f"HTML report: {args.out / HTML_FILE}")
    if merged.run.missing_shards:
        missing = ", ".join(merged.run.missing_shards)
        print(f"missing shards: {missing}: the merged run is not the whole run")
        return 1
    return 0
