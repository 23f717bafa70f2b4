# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_libvirt.py, run with our module already loaded.

    python3 libvirt_checks.py WORKDIR

harness.mgmt.libvirt_checks creates an mdev, runs its checks against the system libvirt and
prints one JSON report as the last stdout line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.mgmt.libvirt_checks import run_checks


def main(argv: list[str]) -> int:
    print(json.dumps(run_checks(Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
