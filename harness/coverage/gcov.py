# SPDX-License-Identifier: MIT
"""Counters (.gcda) and notes (.gcno) to executed lines, with the compiler's gcov, and lcov's
tracefile format.

A counters file's path is its object's path as compiled, below the guest's gcov directory.
Its notes are beside the object in a kernel build directory (which is on this host at that
same path: we built the kernel), or, for a module, in its build cache entry (`NotesDir`: the
build directory it was compiled in, now gone, and where its notes were kept).

`gcov --json-format --stdout` (GCC 9 and later) reads both and needs no source; its line counts
are summed over VMs into `LineCounts`: {source path: {line: times run}}.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LineCounts = dict[str, dict[int, int]]
GCOV_TIMEOUT_S = 60.0


class GcovError(RuntimeError):
    """gcov could not read a counters file; the message has its words."""


@dataclass(frozen=True)
class NotesDir:
    """Where a module's notes were kept (kmod.builder's gcov/ dir), the directory its objects
    were compiled in, and its source, which the reports name instead of that directory."""

    notes: Path
    compiled_in: str
    source: Path


def notes_for(gcda: str, modules: Sequence[NotesDir]) -> Path | None:
    """The .gcno of the counters file at `gcda` (its compiled path), or None if not found."""
    for module in modules:
        prefix = module.compiled_in.rstrip("/") + "/"
        if gcda.startswith(prefix):
            note = module.notes / Path(gcda[len(prefix) :]).with_suffix(".gcno")
            return note if note.is_file() else None
    note = Path(gcda).with_suffix(".gcno")
    return note if note.is_file() else None


def keep_notes(module: NotesDir, dest: Path) -> NotesDir:
    """A copy of the module's notes in `dest`: a run's coverage must not depend on a cache
    entry that can be pruned."""
    shutil.copytree(module.notes, dest, dirs_exist_ok=True)
    return NotesDir(dest, module.compiled_in, module.source)


def run_gcov(gcda: Path, gcno: Path, gcov: str = "gcov") -> dict[str, object]:
    """gcov's JSON for one object: counters and notes side by side in a scratch directory."""
    with tempfile.TemporaryDirectory(prefix="gcov-") as scratch:
        work = Path(scratch)
        shutil.copyfile(gcda, work / "object.gcda")
        shutil.copyfile(gcno, work / "object.gcno")
        try:
            result = subprocess.run(
                [gcov, "--json-format", "--stdout", "-o", str(work), str(work / "object.gcda")],
                capture_output=True, text=True, cwd=work, timeout=GCOV_TIMEOUT_S, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise GcovError(f"{gcov} not found: it comes with gcc") from None
        except subprocess.TimeoutExpired:
            raise GcovError(f"{gcov} on {gcda}: no answer in {GCOV_TIMEOUT_S:.0f} s") from None
        if result.returncode != 0 or not result.stdout.strip():
            raise GcovError(f"{gcov} on {gcda}: {result.stderr.strip()[-400:]}")
        try:
            data = json.loads(result.stdout.splitlines()[0])
        except ValueError as err:
            raise GcovError(f"{gcov} on {gcda}: its JSON does not parse: {err}") from None
    if not isinstance(data, dict):
        raise GcovError(f"{gcov} on {gcda}: not a JSON object")
    return data


def line_counts(report: Mapping[str, object]) -> LineCounts:
    """{source: {line: count}} of one gcov JSON report, sources as absolute paths."""
    cwd = str(report.get("current_working_directory", "/"))
    counts: LineCounts = {}
    files = report.get("files", [])
    for entry in files if isinstance(files, list) else []:
        path = os.path.normpath(os.path.join(cwd, str(entry["file"])))
        lines = counts.setdefault(path, {})
        for line in entry.get("lines", []):
            number, count = int(line["line_number"]), int(line["count"])
            lines[number] = lines.get(number, 0) + count
    return counts


def merge(into: LineCounts, more: LineCounts) -> LineCounts:
    for path, lines in more.items():
        target = into.setdefault(path, {})
        for number, count in lines.items():
            target[number] = target.get(number, 0) + count
    return into


def renamed(counts: LineCounts, renames: Iterable[tuple[str, Path]]) -> LineCounts:
    """Sources below a build directory named below the source they were copied from."""
    result: LineCounts = {}
    pairs = [(prefix.rstrip("/") + "/", source) for prefix, source in renames]
    for path, lines in counts.items():
        name = path
        for prefix, source in pairs:
            if path.startswith(prefix):
                name = str(source / path[len(prefix) :])
                break
        merge(result, {name: lines})
    return result


def lcov_tracefile(counts: LineCounts, test_name: str = "") -> str:
    """lcov's tracefile format (geninfo's): per source SF, DA per line, LF/LH, end_of_record."""
    out = [f"TN:{test_name}"]
    for path in sorted(counts):
        lines = counts[path]
        out.append(f"SF:{path}")
        out.extend(f"DA:{number},{lines[number]}" for number in sorted(lines))
        out.append(f"LF:{len(lines)}")
        out.append(f"LH:{sum(1 for count in lines.values() if count)}")
        out.append("end_of_record")
    return "\n".join(out) + "\n"
