# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_virsh_migration.py, run with our module loaded.

    python3 virsh_migration_checks.py WORKDIR SEED

Prints one JSON report as the last stdout line (harness.mgmt.libvirt_migration).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.mgmt.libvirt_migration import run_virsh_migration


def main(argv: list[str]) -> int:
    print(json.dumps(run_virsh_migration(Path(argv[1]), int(argv[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
