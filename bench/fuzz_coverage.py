# SPDX-License-Identifier: MIT
"""Line coverage of our driver and of drivers/vfio/ (gcov, the debug kernel): the conformance
suite alone, then the suite plus each minute of a fuzzing campaign from an empty corpus, and
the campaign alone; with the fuzzer's speed.

    python bench/fuzz_coverage.py --minutes 10 --out /tmp/fuzzcov
    python bench/fuzz_coverage.py --suite-reports vfio-harness-reports/latest   # reuse a run

Runs `vfio-harness run --kernel debug -n 2 --coverage` (unless --suite-reports names one) and
`vfio-harness fuzz --kernel debug --coverage-every 60`, then sums their counters per copy
(each copy is the campaign's coverage up to then, the VMs it replaced included).
Writes coverage.csv, coverage.svg (the plot) and prints the table. It reports; it does not
assert.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.coverage.report import Coverage, part_totals, read_run

PARTS = (("driver", "our driver"), ("vfio", "drivers/vfio/"))


def cli(*args: str) -> int:
    print("$ vfio-harness " + " ".join(args), flush=True)
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], check=False).returncode


def percents(coverage: Coverage) -> dict[str, float]:
    out = {}
    for name, _title in PARTS:
        totals = part_totals(coverage.part(name))
        out[name] = 100 * totals["executed"] / totals["lines"] if totals["lines"] else 0.0
    return out


def combined(*coverage_dirs: Path) -> Coverage:
    """read_run over the raw counter sets of several runs at once."""
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw"
        raw.mkdir()
        for number, directory in enumerate(coverage_dirs):
            for set_dir in sorted((directory / "raw").glob("*")):
                (raw / f"{number}-{set_dir.name}").symlink_to(set_dir.resolve())
        return read_run(Path(scratch))


def svg(rows: list[dict[str, float]], suite: dict[str, float]) -> str:
    """A line plot: percent of lines against minutes, per part, suite+fuzz and fuzz alone."""
    width, height, left, bottom = 640, 360, 50, 40
    top_minutes = max(row["minutes"] for row in rows) or 1.0

    def x(minutes: float) -> float:
        return left + (width - left - 20) * minutes / top_minutes

    def y(percent: float) -> float:
        return height - bottom - (height - bottom - 20) * percent / 100

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']  # fmt: skip
    for percent in range(0, 101, 20):
        level = y(percent)
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{level}" y2="{level}" '
                     f'stroke="#ddd"/>')  # fmt: skip
        parts.append(f'<text x="{left - 30}" y="{level + 4}">{percent}%</text>')
    step = max(1, math.ceil(top_minutes / 10))
    for minute in range(0, math.floor(top_minutes) + 1, step):
        at = x(minute)
        parts.append(f'<line x1="{at}" x2="{at}" y1="{y(0)}" y2="{y(0) + 4}" stroke="#888"/>'
                     f'<text x="{at - 3}" y="{y(0) + 16}">{minute}</text>')  # fmt: skip
    parts.append(f'<text x="{width / 2 - 60}" y="{height - 4}">minutes of fuzzing</text>')
    colours = {"driver": "#1f77b4", "vfio": "#d62728"}
    legend_y = y(36)  # lower right: coverage climbs at the left and levels off high
    for name, title in PARTS:
        colour = colours[name]
        for key, dash, label in ((f"{name}_with_suite", "", "suite + fuzzing"),
                                 (f"{name}_fuzz", "4,3", "fuzzing alone")):  # fmt: skip
            points = " ".join(f"{x(r['minutes']):.1f},{y(r[key]):.1f}" for r in rows)
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                         f'stroke-width="2" stroke-dasharray="{dash}"/>')  # fmt: skip
            parts.append(f'<line x1="{width - 250}" x2="{width - 220}" y1="{legend_y}" '
                         f'y2="{legend_y}" stroke="{colour}" stroke-width="2" '
                         f'stroke-dasharray="{dash}"/><text x="{width - 214}" '
                         f'y="{legend_y + 4}">{title}: {label}</text>')  # fmt: skip
            legend_y += 16
        level = y(suite[name])
        parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{level}" y2="{level}" '
                     f'stroke="{colour}" stroke-dasharray="1,3"/>')  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between copies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--suite-reports", type=Path, help="a `run --coverage` reports folder")
    parser.add_argument("--out", type=Path, default=Path("fuzz-coverage"))
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    suite_reports = args.suite_reports or out / "suite"
    if args.suite_reports is None:
        cli("run", "--kernel", "debug", "-n", "2", "--coverage", "--reports", str(suite_reports))
    fuzz_reports = out / "fuzz"
    cli("fuzz", "--kernel", "debug", "--duration", f"{args.minutes * 60:.0f}",
        "--coverage-every", f"{args.every:.0f}", "--seed", str(args.seed),
        "--corpus", str(out / "corpus"), "--reports", str(fuzz_reports))  # fmt: skip
    summary = json.loads((fuzz_reports / "summary.json").read_text())
    suite_dir = suite_reports / "coverage"
    suite_coverage = read_run(suite_dir)
    suite = percents(suite_coverage)
    rows = [{"minutes": 0.0, **{f"{n}_with_suite": suite[n] for n, _ in PARTS},
             **{f"{n}_fuzz": 0.0 for n, _ in PARTS}}]  # fmt: skip
    for copy in sorted((fuzz_reports / "coverage").glob("at-*")):
        minutes = float(copy.name.removeprefix("at-")) / 60
        fuzz_coverage = read_run(copy)
        if suite_coverage.driver_sources != fuzz_coverage.driver_sources:
            # Lines are keyed by their source's path: two checkouts would count twice over.
            ours, theirs = (
                sorted(map(str, c.driver_sources)) for c in (suite_coverage, fuzz_coverage)
            )
            sys.exit(f"the suite's driver source {ours} is not the fuzzer's {theirs}: run both "
                     "from one checkout (without --suite-reports, say)")  # fmt: skip
        alone = percents(fuzz_coverage)
        both = percents(combined(suite_dir, copy))
        rows.append({"minutes": round(minutes, 2),
                     **{f"{n}_with_suite": both[n] for n, _ in PARTS},
                     **{f"{n}_fuzz": alone[n] for n, _ in PARTS}})  # fmt: skip
    with (out / "coverage.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "coverage.svg").write_text(svg(rows, suite))
    print(f"\nfuzzing: {summary['programs']} programs, {summary['ops']} ops in "
          f"{summary['seconds']:.0f} s [{summary['accelerator']}]: {summary['ops_per_s_guest']} "
          f"ops/s in the guest, {summary['ops_per_s_wall']} end to end; {summary['pcs']} PCs; "
          f"{len(summary['findings'])} finding(s)")  # fmt: skip
    print(
        "\n| minutes of fuzzing | our driver: suite + fuzzing | fuzzing alone | "
        "drivers/vfio/: suite + fuzzing | fuzzing alone |\n|---|---|---|---|---|"
    )
    for row in rows:
        print(f"| {row['minutes']:.1f} | {row['driver_with_suite']:.1f}% | "
              f"{row['driver_fuzz']:.1f}% | {row['vfio_with_suite']:.1f}% | "
              f"{row['vfio_fuzz']:.1f}% |")  # fmt: skip
    print(f"\n(minute 0 is the suite alone)\n{out / 'coverage.csv'}\n{out / 'coverage.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
