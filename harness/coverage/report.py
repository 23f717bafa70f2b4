# SPDX-License-Identifier: MIT
"""A run's coverage: the counters the VMs left (harness.plugin.coverage's raw sets) summed
per source line, shown as a table per file, and written as lcov's tracefile (lcov.info) and
genhtml's pages (html/index.html).

Two parts are reported: the driver (its source directory: kmod/ or --vendor-src) and the VFIO
core (drivers/vfio/ and drivers/vfio/mdev/ of the kernel's tree). Headers' inline functions
that other code compiled in are left out: they are not the driver's lines.
"""

from __future__ import annotations

import json
import os.path
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness.coverage.gcov import (
    GcovError,
    LineCounts,
    NotesDir,
    lcov_tracefile,
    line_counts,
    merge,
    notes_for,
    renamed,
    run_gcov,
)

SET_FILE = "set.json"
VFIO_CORE = "/drivers/vfio/"
SOURCE_SUFFIXES = (".c", ".h")


@dataclass
class Coverage:
    counts: LineCounts = field(default_factory=dict)
    driver_sources: set[Path] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)  # kernel: files its VMs gave
    kernels: dict[str, int] = field(default_factory=dict)  # kernel: files read with gcov
    problems: list[str] = field(default_factory=list)

    def part(self, name: str) -> LineCounts:
        """The lines of "driver" or "vfio" (the VFIO core)."""
        chosen: LineCounts = {}
        for path, lines in self.counts.items():
            if not path.endswith(SOURCE_SUFFIXES):
                continue
            in_driver = any(Path(path).is_relative_to(s) for s in self.driver_sources)
            if (name == "driver" and in_driver) or (
                name == "vfio" and not in_driver and VFIO_CORE in path
            ):
                chosen[path] = lines
        return chosen


def write_set(where: Path, kernel: str, counters: int, modules: list[NotesDir]) -> None:
    """The record of one VM's counters (in where/counters/): read_run reads it."""
    record = {
        "kernel": kernel,
        "counters": counters,
        "modules": [
            {"notes": str(m.notes), "compiled_in": m.compiled_in, "source": str(m.source)}
            for m in modules
        ],
    }
    where.mkdir(parents=True, exist_ok=True)
    scratch = where / f".{SET_FILE}.tmp"
    scratch.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    scratch.replace(where / SET_FILE)  # whole or not at all: read_run trusts it


def read_run(directory: Path, gcov: str = "gcov") -> Coverage:
    """Sum every raw set under `directory`/raw."""
    coverage = Coverage()
    unmatched: dict[str, tuple[int, int]] = {}  # kernel -> (counter files, VM sets)
    for set_dir in sorted((directory / "raw").glob("*")):
        record_path = set_dir / SET_FILE
        if not record_path.is_file():
            continue
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except ValueError as err:
            coverage.problems.append(f"{record_path}: {err}")
            continue
        modules = [
            NotesDir(Path(m["notes"]), str(m["compiled_in"]), Path(m["source"]))
            for m in record.get("modules", [])
        ]
        coverage.driver_sources.update(m.source for m in modules)
        kernel = str(record.get("kernel", "?"))
        coverage.counters[kernel] = coverage.counters.get(kernel, 0) + int(
            record.get("counters", 0)
        )
        counters = set_dir / "counters"
        read, without_notes = 0, 0
        for gcda in sorted(counters.rglob("*.gcda")):
            compiled = "/" + gcda.relative_to(counters).as_posix()
            gcno = notes_for(compiled, modules)
            if gcno is None:
                without_notes += 1
                continue
            try:
                counts = line_counts(run_gcov(gcda, gcno, gcov))
            except GcovError as err:
                coverage.problems.append(str(err))
                continue
            merge(coverage.counts, renamed(counts, [(m.compiled_in, m.source) for m in modules]))
            read += 1
        if without_notes:
            files, sets = unmatched.get(kernel, (0, 0))
            unmatched[kernel] = (files + without_notes, sets + 1)
        coverage.kernels[kernel] = coverage.kernels.get(kernel, 0) + read
    # Once per kernel: a campaign's many VMs would otherwise repeat it for each.
    for kernel, (files, sets) in unmatched.items():
        coverage.problems.append(
            f"{kernel}: {files} counter file(s) in {sets} VM set(s) without their notes "
            "(.gcno), not counted: a module built outside the harness (--vendor-module, "
            "--vendor-sample), or a kernel build that is gone"
        )
    return coverage


def executed(lines: dict[int, int]) -> tuple[int, int]:
    return sum(1 for count in lines.values() if count), len(lines)


def percent(hit: int, total: int) -> str:
    return f"{100 * hit / total:5.1f}%" if total else "    -"


def table(coverage: Coverage) -> list[str]:
    """The per-file lines: executed of instrumented, per part, with the part's total."""
    out = []
    for name, title in (("driver", "driver"), ("vfio", "VFIO core (drivers/vfio/)")):
        part = coverage.part(name)
        if not part:
            continue
        totals = part_totals(part)
        hit, total = totals["executed"], totals["lines"]
        out.append(f"{title}: {hit} of {total} lines executed ({percent(hit, total).strip()})")
        root = _common_dir(list(part))
        for path in sorted(part):
            file_hit, file_total = executed(part[path])
            shown = Path(path).relative_to(root) if root else Path(path)
            out.append(
                f"  {shown!s:40} {file_hit:5} of {file_total:5}  {percent(file_hit, file_total)}"
            )
    return out


def _common_dir(paths: list[str]) -> Path | None:
    """The deepest directory holding all of `paths` (files)."""
    common = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    return Path(common) if common else None


def part_totals(part: LineCounts) -> dict[str, int]:
    counts = [executed(lines) for lines in part.values()]
    return {"executed": sum(h for h, _ in counts), "lines": sum(t for _, t in counts)}


def write_reports(coverage: Coverage, directory: Path) -> list[str]:
    """lcov.info, summary.json and, when lcov's genhtml is installed, html/; what was written,
    as lines to show."""
    driver, vfio = coverage.part("driver"), coverage.part("vfio")
    tracefile = directory / "lcov.info"
    tracefile.write_text(lcov_tracefile(merge(dict(driver), vfio), "vfio-harness"), "utf-8")
    summary = {
        "kernels": coverage.kernels,
        "driver": part_totals(driver),
        "vfio": part_totals(vfio),
        "problems": coverage.problems,
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    written = [f"lcov tracefile: {tracefile}"]
    genhtml = shutil.which("genhtml")
    if genhtml is None:
        written.append("no HTML pages: genhtml not found (vfio-harness setup --profile coverage)")
        return written
    html = directory / "html"
    result = subprocess.run(
        [genhtml, "--quiet", "--output-directory", str(html), "--title", "vfio-harness",
         str(tracefile)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        written.append(f"genhtml failed: {result.stderr.strip()[-300:]}")
    else:
        written.append(f"coverage pages: {html / 'index.html'}")
    return written
