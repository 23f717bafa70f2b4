# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_live_migration.py, run with our module loaded.

    python3 live_migration_checks.py carry WORKDIR SEED      # harness.nested.live_migration
    python3 live_migration_checks.py failures WORKDIR SEED   # harness.nested.migration_failures

Prints one JSON report as the last stdout line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.nested.live_migration import run_live_migration
from harness.nested.migration_failures import run_migration_failures

VARIANTS = {"carry": run_live_migration, "failures": run_migration_failures}


def main(argv: list[str]) -> int:
    variant, workdir, seed = argv[1], Path(argv[2]), int(argv[3])
    if variant not in VARIANTS:
        print(f"unknown variant {variant!r}: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    print(json.dumps(VARIANTS[variant](workdir, seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
