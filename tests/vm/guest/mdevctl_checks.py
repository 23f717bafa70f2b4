# SPDX-License-Identifier: MIT
"""The in-guest (L1) half of tests/vm/test_mdevctl.py, run with the driver already loaded.

    python3 mdevctl_checks.py MODULE_KO                                   # our module
    python3 mdevctl_checks.py MODULE_KO NAME PARENT AUTO_TYPE MANUAL_TYPE  # any mdev driver
    (PARENT "-": the parent that offers AUTO_TYPE)

Runs harness.mgmt.mdevctl_checks (MODULE_KO is reloaded by the autostart steps) and prints one
JSON report as the last stdout line.
"""

from __future__ import annotations

import json
import sys

from harness.mdev import MdevError
from harness.mgmt.mdevctl_checks import Driver, run_checks


def main(argv: list[str]) -> int:
    try:
        driver = Driver.from_args(argv[1:])
    except (ValueError, MdevError) as err:  # no such type or parent: say so in the report
        print(json.dumps({"results": {}, "setup": str(err), "cleanup": []}))
        return 0
    print(json.dumps(run_checks(driver)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
