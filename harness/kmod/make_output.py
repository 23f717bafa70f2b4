# SPDX-License-Identifier: MIT
"""Kbuild's output, sorted into what a caller acts on: warnings and error lines.

The build runs with LC_ALL=C, so gcc's diagnostics are plain ASCII `file:line:col: kind: text`.
Paths inside the staged copy of the module are shown relative to the module's own directory,
so they read like the user's source tree rather than a temporary one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# "hello.c:12:5: warning: ...", "cc1: warning: ...", "ld: warning: ...".
_DIAGNOSTIC = re.compile(
    r"^(?P<where>[^\s:]+(?::\d+){0,2}): (?P<kind>warning|error|fatal error): (?P<text>.*)$"
)
# modpost speaks in capitals: "WARNING: modpost: missing MODULE_DESCRIPTION() in hello.o".
_MODPOST = re.compile(r"^(?P<kind>WARNING|ERROR): (?P<text>.*)$")
_LINKER_ERROR = re.compile(r"undefined reference to|multiple definition of")
# kbuild's progress ("  CC [M]  hello.o") and make's directory changes.
_CHATTER = re.compile(r"^(?:  [A-Z0-9_]+ |make(?:\[\d+\])?: (?:Entering|Leaving) directory )")
FALLBACK_MAX_LINES = 20


@dataclass(frozen=True)
class MakeOutput:
    warnings: tuple[str, ...]  # compiler and linker warnings, one line each
    modpost_warnings: tuple[str, ...]
    errors: tuple[str, ...]  # what to show when the build failed


def relative_paths(text: str, module_dir: str) -> str:
    """Show paths in the staged module directory relative to it."""
    return text.replace(module_dir.rstrip("/") + "/", "")


def parse_make_output(text: str, module_dir: str) -> MakeOutput:
    warnings: list[str] = []
    modpost_warnings: list[str] = []
    errors: list[str] = []
    for raw in relative_paths(text, module_dir).splitlines():
        line = raw.rstrip()
        diagnostic = _DIAGNOSTIC.match(line)
        modpost = _MODPOST.match(line)
        if diagnostic:
            (warnings if diagnostic["kind"] == "warning" else errors).append(line)
        elif modpost:
            (modpost_warnings if modpost["kind"] == "WARNING" else errors).append(line)
        elif _LINKER_ERROR.search(line):
            errors.append(line)
    return MakeOutput(
        warnings=tuple(_unique(warnings)),
        modpost_warnings=tuple(_unique(modpost_warnings)),
        errors=tuple(_unique(errors)),
    )


def failure_lines(text: str, module_dir: str) -> list[str]:
    """The error lines of a failed build.

    Without compiler errors (a tool kbuild runs failed, or make itself), everything that is
    not kbuild's progress chatter: the failing tool's complaint and make's `***` lines.
    """
    errors = list(parse_make_output(text, module_dir).errors)
    if errors:
        return errors
    lines = [line.rstrip() for line in relative_paths(text, module_dir).splitlines()]
    kept = [line for line in lines if line.strip() and not _CHATTER.match(line)]
    return kept[-FALLBACK_MAX_LINES:]


def _unique(lines: Sequence[str]) -> list[str]:
    """A header's warning repeats for every file that includes it: keep the first of each."""
    return list(dict.fromkeys(lines))
