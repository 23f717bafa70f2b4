# SPDX-License-Identifier: MIT
"""The README's configuration table names every HARNESS_* variable the harness, its tests,
benchmarks and CI read or set, so a user can look any of them up."""

from __future__ import annotations

import re
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"HARNESS_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")  # not HARNESS_MDEV_*
SOURCES = ("harness", "tests", "bench")


def used_variables() -> set[str]:
    files = [p for d in SOURCES for p in (CHECKOUT / d).rglob("*.py") if p != Path(__file__)]
    files += [CHECKOUT / "tox.ini", CHECKOUT / ".ci/run"]
    return {name for path in files for name in VARIABLE.findall(path.read_text())}


def documented_variables() -> set[str]:
    readme = (CHECKOUT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in VARIABLE.findall(cell)}


def test_every_variable_is_in_the_readme_table() -> None:
    used = used_variables()
    assert {"HARNESS_CACHE_DIR", "HARNESS_REQUIRE_VM", "HARNESS_SUITE"} <= used
    missing = used - documented_variables()
    assert not missing, f"HARNESS_* variables missing from README's Configuration: {missing}"


def test_the_table_names_no_variable_that_does_not_exist() -> None:
    stale = documented_variables() - used_variables()
    assert not stale, f"README documents variables nothing uses: {stale}"
