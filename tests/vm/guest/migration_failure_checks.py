# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_live_migration.py's failure paths, run with our
module loaded.

    python3 migration_failure_checks.py WORKDIR SEED

Prints one JSON report as the last stdout line (harness.nested.migration_failures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.nested.migration_failures import run_migration_failures


def main(argv: list[str]) -> int:
    print(json.dumps(run_migration_failures(Path(argv[1]), int(argv[2]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
