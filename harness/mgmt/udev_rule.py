# SPDX-License-Identifier: MIT
"""mdevctl's udev rule (60-mdevctl.rules): which program it runs, and a copy that runs another.

The rule starts a parent's `--auto` devices when the parent registers with mdev
(`RUN+="... <program> start-parent-mdevs %k ..."`). Debian trixie's mdevctl 1.4.0 ships it
calling /usr/sbin/mdevctl while the package installs /usr/bin/mdevctl, so nothing autostarts
(the same symptom as upstream mdevctl issue #82). A same-named rule in /run/udev/rules.d
overrides the packaged one until the next boot: that is where the corrected copy goes.
"""

from __future__ import annotations

import re

PACKAGED = "/usr/lib/udev/rules.d/60-mdevctl.rules"
RUNTIME = "/run/udev/rules.d/60-mdevctl.rules"

_PROGRAM = re.compile(r"(\S*mdevctl) start-parent-mdevs ")


class RuleError(ValueError):
    """The rule is not the one these checks know how to read."""


def rule_program(rule: str) -> str:
    """The one program the rule's RUN+= entries call with start-parent-mdevs."""
    programs: set[str] = set(_PROGRAM.findall(rule))
    if len(programs) != 1:
        raise RuleError(
            f"expected one program calling start-parent-mdevs in {PACKAGED}, found "
            f"{sorted(programs) or 'none'}"
        )
    return programs.pop()


def with_program(rule: str, program: str) -> str:
    """The rule with every start-parent-mdevs call going to `program` instead."""
    return _PROGRAM.sub(lambda _match: f"{program} start-parent-mdevs ", rule)
