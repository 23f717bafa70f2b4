# SPDX-License-Identifier: MIT
"""Does the fuzzer find our module's deliberate bugs (kmod/faults.h), and how fast? For each
fault bit alone: `vfio-harness fuzz --module-faults BIT --max-findings 1` from an empty corpus
on the debug kernel, then the reproducer it wrote replayed in a VM of the fault build (it must
fail) and of the normal build (it must pass).

    tox -e fuzz-faults                               # every bit, 10 min budget each
    python bench/fuzz_faults.py --bits 4,16 --budget 300 --seed 1

Reports per bit: time to the first finding, programs run before it, the finding's kind and
headline, the program's length before and after minimizing, and the two replays' outcomes.
A benchmark: it reports; the exit status only says whether every bit was found and its
reproducer behaved (0) or not (1), for the tox env.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FAULTS = {
    1: "KEEP_PINS_ON_UNMAP: .dma_unmap leaves kept pages pinned",
    2: "MEM_OVERRUN: BAR2 writes run a page past device memory",
    4: "WARN_ON_RESET: VFIO_DEVICE_RESET hits a WARN",
    8: "BOUNCE_OVERRUN: guest-to-guest DMA overruns its bounce buffer",
    16: "LEAK_ON_RESET: VFIO_DEVICE_RESET leaks 256 bytes",
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "harness.cli", *args]
    return subprocess.run(command, text=True, stdout=subprocess.PIPE, check=False)


def prove(bit: int, kernel: str, budget: float, seed: int, work: Path) -> dict[str, Any]:
    corpus, reports = work / f"corpus-{bit}", work / f"reports-{bit}"
    print(f"\n== fault {bit}: {FAULTS[bit]}", flush=True)
    started = time.monotonic()
    fuzz = cli("fuzz", "--kernel", kernel, "--module-faults", str(bit), "--max-findings", "1",
               "--duration", f"{budget:.0f}", "--seed", str(seed), "--corpus", str(corpus),
               "--reports", str(reports))  # fmt: skip
    wall = time.monotonic() - started
    print(fuzz.stdout, flush=True)
    summary = json.loads((reports / "summary.json").read_text())
    row: dict[str, Any] = {"bit": bit, "fault": FAULTS[bit], "fuzz_exit": fuzz.returncode,
                           "wall_s": round(wall), "accelerator": summary["accelerator"],
                           "programs": summary["programs"]}  # fmt: skip
    if not summary["findings"]:
        row["found"] = False
        return row
    finding = summary["findings"][0]
    test = next((reports / "findings" / finding["fingerprint"]).glob("test_finding_*.py"))
    faulty = cli("fuzz", "--kernel", kernel, "--module-faults", str(bit), "--replay", str(test))
    normal = cli("fuzz", "--kernel", kernel, "--replay", str(test))
    row.update(
        found=True,
        found_after_s=finding["found_after_s"],
        kind=finding["kind"],
        headline=finding["headline"],
        ops=finding["ops"],
        original_ops=finding["original_ops"],
        reproducer=str(test),
        replay_faulty_exit=faulty.returncode,
        replay_normal_exit=normal.returncode,
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", default=",".join(map(str, FAULTS)), help="fault bits to try")
    parser.add_argument("--kernel", default="debug")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per fault")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fuzz-faults-") as scratch:
        work = Path(scratch)
        for bit in (int(b) for b in args.bits.split(",")):
            rows.append(prove(bit, args.kernel, args.budget, args.seed, work))
            if args.out:
                args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| fault | found after | programs | kind | ops (minimized from) | replay: faulty / "
          "normal build |\n|---|---|---|---|---|---|")  # fmt: skip
    good = True
    for row in rows:
        if not row.get("found"):
            good = False
            print(f"| {row['bit']} | not in {row['wall_s']} s | {row['programs']} | | | |")
            continue
        # pytest's 1 is a failed test; 2 and up (errors, no tests) would prove nothing
        behaved = row["replay_faulty_exit"] == 1 and row["replay_normal_exit"] == 0
        good = good and behaved
        print(
            f"| {row['bit']} | {row['found_after_s']:.0f} s [{row['accelerator']}] | "
            f"{row['programs']} | {row['kind']}: {row['headline'][:70]} | {row['ops']} "
            f"({row['original_ops']}) | exit {row['replay_faulty_exit']} / "
            f"{row['replay_normal_exit']}{'' if behaved else ' (WRONG)'} |"
        )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
