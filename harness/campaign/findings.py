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
import textwrap
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
                found.append(FindingRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def save(self, record: FindingRecord) -> Path:
        """Write the record and its reproducer; the reproducer's path."""
        folder = self.root / record.fingerprint
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
        test = folder / f"{record.test_name}.py"
        test.write_text(reproducer(record))
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
            "Run it as root where the device is (HARNESS_MDEV_TYPE names its type):",
            "    python3 -m pytest THIS_FILE",
            "or in the fuzzer's VM: vfio-harness fuzz --replay THIS_FILE [--kernel ...]",
        ]
    )
    doc = doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    program = pprint.pformat(record.program, width=96, sort_dicts=False)
    return (
        "# SPDX-License-Identifier: MIT\n"
        f'"""{doc}\n"""\n\n'
        "from harness.fuzz.replay import replay\n\n"
        f"FINGERPRINT = {record.fingerprint!r}\n"
        f"HEADLINE = {record.headline!r}\n"
        f"PROGRAM = {textwrap.indent(program, '').strip()}\n\n\n"
        f"def {record.test_name}() -> None:\n"
        "    problems = replay(PROGRAM, HEADLINE)\n"
        '    assert not problems, "the kernel still reports " + HEADLINE + ":\\n" + '
        '"\\n".join(problems)\n'
    )


__all__ = ["FindingRecord", "FindingStore", "reproducer"]
