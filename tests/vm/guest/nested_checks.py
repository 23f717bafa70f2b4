# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_nested.py, run with our module already loaded.

    python3 nested_checks.py qtest WORKDIR
    python3 nested_checks.py l2 WORKDIR KERNEL [MODULE]

Creates an mdev, starts L1's QEMU on it with vfio-pci, plays the guest driver of the machine
(qtest: directly; l2: through a booted L2's shell) and prints one JSON report as the last
stdout line: {"results": {check: "ok" | what broke}, timings, QEMU's version, trace tail}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.nested.l2 import CONSOLE_LOG, l2_machine_factory, l2_spec_options
from harness.nested.run import run_variant


def main(argv: list[str]) -> int:
    variant, workdir = argv[1], Path(argv[2])
    if variant == "qtest":
        report = run_variant("qtest", workdir)
    elif variant == "l2":
        kernel = Path(argv[3])
        module = Path(argv[4]) if len(argv) > 4 else None
        options = l2_spec_options(workdir, kernel, module)
        report = run_variant(
            "l2", workdir, spec_options=options, make_machine=l2_machine_factory(workdir)
        )
        console = workdir / CONSOLE_LOG
        if console.exists():
            report["l2_console_tail"] = console.read_text(errors="replace").splitlines()[-40:]
    else:
        print(f"unknown variant {variant!r}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
