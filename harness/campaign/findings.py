# SPDX-License-Identifier: MIT
"""What the fuzzer found, once per fingerprint, kept in the cache beside the corpus, each with a
standalone pytest reproducer.

    store = FindingStore(cache_dir("fuzz", target, "findings"))
    store.known(fingerprint)                 # found by this run or an earlier one
    path = store.save(record)                # <fingerprint>/finding.json and test_finding_*.py

The reproducer runs the minimized program on a new device where the device is (a guest, or
a host with --target local's devices) through harness.fuzz.replay, and fails while the kernel
reports the problem: on the faulty driver it fails, once the driver is fixed it passes.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.fuzz.program import describe

RECORD = "finding.json"
MAX_SPLAT_LINES = 40


@dataclass
class FindingRecord:
    fingerprint: str
    kind: str  # harness.plugin.health's kinds: warning, bug, oops, panic, hung, kmemleak
    headline: str
    lines: list[str]
    program: list[dict[str, Any]]  # minimized
    original_ops: int
    found_after_s: float  # from the campaign's start to the first program that showed it
    iterations: int  # programs run before it
    minimize_runs: int
    minimize_s: float
    kernel: str
    mdev_type: str
    accelerator: str
    reproduced: bool = True  # the minimized program showed it again
    duplicates: int = 0  # later programs of this campaign that showed it too
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def test_name(self) -> str:
        return f"test_finding_{self.fingerprint}"


class FindingStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def known(self, fingerprint: str) -> bool:
        return (self.root / fingerprint / RECORD).exists()

    def records(self) -> list[FindingRecord]:
        found = []
        for path in sorted(self.root.glob(f"*/{RECORD}")):
            try:
                found.append(FindingRecord(**json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def save(self, record: FindingRecord) -> Path:
        """Write the record and its reproducer; the reproducer's path."""
        folder = self.root / record.fingerprint
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
        test = folder / f"{record.test_name}.py"
        test.write_text(reproducer(record), encoding="utf-8")
        return test


def reproducer(record: FindingRecord) -> str:
    """A pytest module that fails while the kernel still reports the finding."""
    splat = record.lines[:MAX_SPLAT_LINES] or [record.headline]
    if len(record.lines) > MAX_SPLAT_LINES:
        splat.append(f"... {len(record.lines) - MAX_SPLAT_LINES} more line(s)")
    steps = [f"{i + 1:2d}. {describe(op)}" for i, op in enumerate(record.program)]
    doc = "\n".join(
        [
            f"vfio-harness fuzz finding {record.fingerprint}: {record.headline}",
            "",
            f"Found on {record.kernel} ({record.mdev_type}, {record.accelerator}) after "
            f"{record.found_after_s:.0f} s and {record.iterations} programs; minimized from "
            f"{record.original_ops} to {len(record.program)} operations.",
            "",
            "The program:",
            *(f"    {step}" for step in steps),
            "",
            f"What the kernel said ({record.kind}):",
            *(f"    {line}" for line in splat),
            "",
            "Run it as root where the device is (a new device of MDEV_TYPE, or of the type",
            "HARNESS_MDEV_TYPE names):",
            "    python3 -m pytest THIS_FILE",
            "or in the fuzzer's VM: vfio-harness fuzz --replay THIS_FILE [--kernel ...]",
        ]
    )
    doc = _printable(doc).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    program = pprint.pformat(record.program, width=96, sort_dicts=False)
    return (
        "# SPDX-License-Identifier: MIT\n"
        f'"""{doc}\n"""\n\n'
        "from harness.fuzz.replay import replay\n\n"
        f"FINGERPRINT = {record.fingerprint!r}\n"
        f"HEADLINE = {record.headline!r}\n"
        f"MDEV_TYPE = {record.mdev_type!r}\n"
        f"PROGRAM = {program}\n\n\n"
        f"def {record.test_name}() -> None:\n"
        "    problems = replay(PROGRAM, HEADLINE, MDEV_TYPE)\n"
        '    assert not problems, "the kernel still reports " + HEADLINE + ":\\n" + '
        '"\\n".join(problems)\n'
    )


def _printable(text: str) -> str:
    """Console text as a docstring may hold it: control characters (a NUL from the serial
    line, say) shown as escapes, newlines kept."""
    return "".join(
        c if c == "\n" or c.isprintable() else c.encode("unicode_escape").decode() for c in text
    )


__all__ = ["FindingRecord", "FindingStore", "reproducer"]
