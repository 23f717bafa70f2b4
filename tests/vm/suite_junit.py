# SPDX-License-Identifier: MIT
"""Did a suite run really test the device? Read from its JUnit XML, as a CI job would.

A green run that tested nothing is the failure we guard against: every file of the suite must
have passed tests (a driver other than ours may skip the files that need our reference
device, and only those, and its known bugs' expected failures count as verdicts on it), and no
test may have skipped for want of a device.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field

# What the suite's conftest says when the device under test is missing.
NO_DEVICE = re.compile(r"no device to test|has no available instance")
REFDEV_ONLY = re.compile(r"needs the reference device")


@dataclass
class SuiteJunit:
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    skip_reasons: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    failed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for counts in self.outcomes.values())

    def count(self, outcome: str) -> int:
        return sum(counts[outcome] for counts in self.outcomes.values())

    def summary(self) -> str:
        outcomes = ("passed", "failed", "xfailed", "skipped")
        return ", ".join(f"{self.count(o)} {o}" for o in outcomes)


def read_suite_junit(xml: str) -> SuiteJunit:
    """Per test file: outcomes and skip reasons; and the failed tests' names."""
    result = SuiteJunit()
    for case in ET.fromstring(xml).iter("testcase"):
        module = case.get("classname", "").split("::")[0]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                result.failed.append(f"{module}::{case.get('name')}")
            elif child.tag == "skipped" and child.get("type") == "pytest.xfail":
                outcome = "xfailed"  # a known bug of the driver: a verdict on it
            elif child.tag == "skipped":
                outcome = "skipped"
                result.skip_reasons[module][child.get("message", "")] += 1
        result.outcomes[module][outcome] += 1
    return result


def untested(run: SuiteJunit, *, files: int, refdev: bool) -> list[str]:
    """Why `run` did not test the device, or nothing. `files`: how many test files the suite
    has; `refdev`: the device is ours, so no file may be left out for needing it."""
    problems = []
    if len(run.outcomes) < files:
        problems.append(f"only {len(run.outcomes)} of {files} test files ran")
    for module, outcomes in sorted(run.outcomes.items()):
        reasons = run.skip_reasons[module]
        missing = [why for why in reasons if NO_DEVICE.search(why)]
        if missing:
            problems.append(f"{module}: skipped for a missing device: {missing[0]}")
        refdev_only = not refdev and all(REFDEV_ONLY.search(why) for why in reasons)
        verdicts = outcomes["passed"] + (0 if refdev else outcomes["xfailed"])
        if verdicts == 0 and not (refdev_only and outcomes["skipped"]):
            problems.append(f"{module}: no test passed ({dict(outcomes)})")
    return problems
