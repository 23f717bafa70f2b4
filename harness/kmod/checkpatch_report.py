# SPDX-License-Identifier: MIT
"""checkpatch.pl's `--emacs --show-types --summary-file` output, parsed into counts and messages.

A finding starts with `FILE:LINE: LEVEL:TYPE: text`, followed by its `#N: FILE: ...` line and
the offending source lines (`+...`) up to a blank line. Each file ends with
`FILE total: E errors, W warnings[, C checks], N lines checked` (checks with --strict only).
(--terse would be shorter but prints no total for a clean file, and a missing total must mean
a failed run.) The counts are the sum of the totals and must agree with the findings parsed:
output this parser does not understand is an error, never a silently clean report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MESSAGE = re.compile(
    r"^(?P<file>[^\s+#].*?):(?P<line>\d+): (?P<level>ERROR|WARNING|CHECK):(?P<type>[A-Z0-9_]+): "
    r"(?P<text>.*)$"
)
_TOTAL = re.compile(
    r"^(?:(?P<file>\S.*) )?total: (?P<errors>\d+) errors, (?P<warnings>\d+) warnings, "
    r"(?:(?P<checks>\d+) checks, )?(?P<lines>\d+) lines checked$"
)
_LEVELS = ("ERROR", "WARNING", "CHECK")


class CheckpatchOutputError(ValueError):
    """checkpatch's output is not what this parser expects (a failed run, or a new format)."""


@dataclass(frozen=True)
class CheckpatchMessage:
    file: str
    line: int
    level: str  # ERROR, WARNING or CHECK
    type: str  # e.g. SPACING, LONG_LINE (what --ignore takes)
    text: str
    context: tuple[str, ...] = ()  # the source lines checkpatch quoted, "+" prefix and all

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}:{self.type}: {self.text}"


@dataclass(frozen=True)
class CheckpatchReport:
    errors: int
    warnings: int
    checks: int  # --strict's CHECK level (0 without --strict)
    lines_checked: int
    files: tuple[str, ...]  # those checkpatch printed a total for, named as given
    messages: tuple[CheckpatchMessage, ...]
    output: str  # what checkpatch printed, for the log

    @property
    def clean(self) -> bool:
        return self.errors == self.warnings == self.checks == 0

    def summary(self) -> str:
        head = (
            f"checkpatch: {self.errors} errors, {self.warnings} warnings, {self.checks} checks "
            f"in {len(self.files)} files ({self.lines_checked} lines)"
        )
        return "\n".join([head, *(f"  {message}" for message in self.messages)])


def parse_checkpatch_output(
    output: str, names: Mapping[str, str] | None = None
) -> CheckpatchReport:
    """The report of one run; `names` maps the paths checkpatch was given to those to show."""
    shown = dict(names or {})
    messages: list[CheckpatchMessage] = []
    context: list[str] = []
    totals = {"errors": 0, "warnings": 0, "checks": 0, "lines": 0}
    files: list[str] = []

    def finish_message() -> None:
        if messages and context:
            messages[-1] = _with_context(messages[-1], context)
        context.clear()

    for line in output.splitlines():
        message = _MESSAGE.match(line)
        total = _TOTAL.match(line)
        if message:
            finish_message()
            messages.append(
                CheckpatchMessage(
                    shown.get(message["file"], message["file"]),
                    int(message["line"]),
                    message["level"],
                    message["type"],
                    message["text"],
                )
            )
            context.append("")  # open: collect until a blank line
        elif total:
            finish_message()
            files.append(shown.get(total["file"] or "", total["file"] or "-"))
            for key in totals:
                totals[key] += int(total[key] or 0)
        elif context:
            if line.strip():
                context.append(line)
            else:
                finish_message()
    finish_message()
    if not files:
        raise CheckpatchOutputError(
            f"no `total:` line in checkpatch's output: it did not finish:\n{output[-2000:]}"
        )
    counted = [sum(m.level == level for m in messages) for level in _LEVELS]
    claimed = [totals["errors"], totals["warnings"], totals["checks"]]
    if counted != claimed:
        raise CheckpatchOutputError(
            f"checkpatch's totals {claimed} do not match the {counted} findings parsed "
            f"(errors, warnings, checks): has its output format changed?\n{output[-2000:]}"
        )
    return CheckpatchReport(
        errors=totals["errors"],
        warnings=totals["warnings"],
        checks=totals["checks"],
        lines_checked=totals["lines"],
        files=tuple(files),
        messages=tuple(messages),
        output=output,
    )


def _with_context(message: CheckpatchMessage, collected: list[str]) -> CheckpatchMessage:
    # The first collected entry is the opening marker; "#N: FILE: ..." repeats the location.
    quoted = tuple(line for line in collected[1:] if not line.startswith("#"))
    return CheckpatchMessage(
        message.file, message.line, message.level, message.type, message.text, quoted
    )
