# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_libvirt.py's nested steps, with our module loaded.

    python3 libvirt_steps.py WORKDIR

Prints one JSON report as the last stdout line (harness.mgmt.libvirt_steps).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.mgmt.libvirt_steps import run_libvirt_steps


def main(argv: list[str]) -> int:
    print(json.dumps(run_libvirt_steps(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
