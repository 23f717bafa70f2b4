# SPDX-License-Identifier: MIT
"""What `vfio-harness run` passes on to pytest from after `--`: options as they are, and test
paths or node ids (tests/uapi/test_dma_map.py, test_info.py::test_x[type1-bookworm]) as what
runs instead of the whole suite.

pytest runs in the suite's rootdir, not where the user is, so a selector is resolved to an
absolute path: relative to the user's directory if the file is there, else to the rootdir
(test ids as reports print them), else to the suite itself (a bare file name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Options that take the next argument as their value, whatever it looks like (-k test_x.py).
_VALUE_OPTIONS = frozenset(
    {"-k", "-m", "-n", "-p", "-o", "-c", "-W", "-r", "--tb", "--maxfail", "--deselect",
     "--ignore", "--ignore-glob", "--rootdir", "--basetemp", "--durations", "--dist",
     "--guest-timeout", "--import-mode", "--log-level", "--confcutdir", "--override-ini"}
)  # fmt: skip


class SelectorError(ValueError):
    """A test path after -- that is not there."""


@dataclass(frozen=True)
class PytestArgs:
    selectors: tuple[str, ...]  # absolute paths, with ::node parts kept
    options: tuple[str, ...]


def looks_like_selector(arg: str, bases: tuple[Path, ...]) -> bool:
    """A test file, node id or directory: anything else that is not an option is an option's
    value (pytest's and its plugins' options are too many to list: `--ktap out.ktap`)."""
    path = arg.partition("::")[0]
    return "::" in arg or path.endswith(".py") or any((base / path).is_dir() for base in bases)


def split(args: list[str], *, cwd: Path, rootdir: Path, suite: Path) -> PytestArgs:
    """`args` (after --) split into test selectors and everything else, in order."""
    selectors: list[str] = []
    options: list[str] = []
    takes_value = False
    for arg in args:
        if takes_value or arg.startswith("-") or not looks_like_selector(arg, (cwd, rootdir)):
            options.append(arg)
            takes_value = not takes_value and arg in _VALUE_OPTIONS
            continue
        selectors.append(resolve(arg, cwd=cwd, rootdir=rootdir, suite=suite))
    return PytestArgs(tuple(selectors), tuple(options))


def resolve(selector: str, *, cwd: Path, rootdir: Path, suite: Path) -> str:
    path, sep, node = selector.partition("::")
    for base in (cwd, rootdir, suite):
        candidate = (base / path).resolve()
        if candidate.exists() and candidate.is_relative_to(suite):
            return f"{candidate}{sep}{node}"
    raise SelectorError(
        f"{path}: no such test file or directory in the suite ({suite}); give a path there, "
        "a test id as the reports show it (tests/uapi/test_x.py::test_y[...]), or a file "
        "name such as test_info.py"
    )


__all__ = ["PytestArgs", "SelectorError", "resolve", "split"]
