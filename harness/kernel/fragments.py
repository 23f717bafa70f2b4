# SPDX-License-Identifier: MIT
"""Kernel config fragments: parsing them, and checking that Kconfig kept what they asked for.

A fragment is a `.config` excerpt (`CONFIG_X=y`, `CONFIG_X=m`, `CONFIG_X="text"`, `CONFIG_X=12`
or `# CONFIG_X is not set`). `merge_config.sh` merges fragments onto a base config and
`make olddefconfig` then resolves dependencies, silently dropping or downgrading a symbol
whose dependencies are unmet (or that has no prompt). `config_mismatches` finds every such
symbol by comparing the final `.config` with what the fragments asked for, so a fragment line
that did not take effect is an error naming the symbol, its fragment and line.

Pure functions only: build.py runs the tools.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")
NOT_SET = "n"
BASE_FRAGMENT = "base"  # what every kernel built from a tree needs to boot as a guest


def with_base(given: Sequence[str]) -> list[str]:
    """base first, then the user's fragments in order, base not twice."""
    base = (BASE_FRAGMENT, f"{BASE_FRAGMENT}.config")
    return [BASE_FRAGMENT, *(f for f in given if f not in base)]


class FragmentError(ValueError):
    """A fragment line that is neither a symbol assignment nor a comment."""


class ConfigMismatchError(RuntimeError):
    """Symbols the fragments asked for that the final .config does not have as asked."""

    def __init__(self, mismatches: list[Mismatch]) -> None:
        self.mismatches = mismatches
        lines = "\n".join(f"  {m.describe()}" for m in mismatches)
        super().__init__(
            f"{len(mismatches)} config fragment symbol(s) did not survive olddefconfig "
            f"(unmet dependency, no prompt, or a choice that lost):\n{lines}"
        )


@dataclass(frozen=True)
class Request:
    """One fragment line: symbol (without CONFIG_), value ("n" for `is not set`), origin."""

    symbol: str
    value: str
    origin: str  # "base.config:12"


@dataclass(frozen=True)
class Mismatch:
    request: Request
    actual: str | None  # None: the symbol is not in the final .config at all

    def describe(self) -> str:
        r = self.request
        wanted = "not set" if r.value == NOT_SET else r.value
        if self.actual is None:
            got = "absent from .config (its dependencies are not met)"
        elif self.actual == NOT_SET:
            got = "not set"
        else:
            got = self.actual
        return f"CONFIG_{r.symbol}: requested {wanted} ({r.origin}), got {got}"


def parse_fragment(text: str, name: str) -> list[Request]:
    """The requests of one fragment, in order. Other comments and blank lines are ignored."""
    requests = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        origin = f"{name}:{number}"
        if match := _SET.match(line):
            requests.append(Request(match[1], match[2], origin))
        elif match := _UNSET.match(line):
            requests.append(Request(match[1], NOT_SET, origin))
        elif line and not line.startswith("#"):
            raise FragmentError(
                f"{origin}: not a config line: {raw!r} "
                "(expected CONFIG_X=value or '# CONFIG_X is not set')"
            )
        elif line.startswith("# CONFIG_"):
            raise FragmentError(
                f"{origin}: {raw!r} looks like a symbol but is not "
                "'# CONFIG_X is not set': fix it or reword the comment"
            )
    return requests


def merge_requests(fragments: Iterable[list[Request]]) -> dict[str, Request]:
    """What the fragments ask for once merged in order: a later fragment overrides an earlier
    one, as merge_config.sh does."""
    merged: dict[str, Request] = {}
    for requests in fragments:
        for request in requests:
            merged[request.symbol] = request
    return merged


def parse_dotconfig(text: str) -> dict[str, str]:
    """A .config as {symbol: value}; `is not set` is "n". Values keep their quotes."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if match := _SET.match(line):
            values[match[1]] = match[2]
        elif match := _UNSET.match(line):
            values[match[1]] = NOT_SET
    return values


def config_mismatches(requests: Mapping[str, Request], final: Mapping[str, str]) -> list[Mismatch]:
    """Every request the final config does not satisfy, in fragment order.

    "not set" is satisfied by a symbol that is absent too (Kconfig omits invisible symbols).
    Everything else must match exactly: `m` turning into `y` is reported as well, since a
    module we expect to load (or unload) would then be built in.
    """
    mismatches = []
    for request in requests.values():
        actual = final.get(request.symbol)
        if request.value == NOT_SET:
            if actual not in (None, NOT_SET):
                mismatches.append(Mismatch(request, actual))
        elif actual != request.value:
            mismatches.append(Mismatch(request, actual))
    return mismatches


def verify_config(requests: Mapping[str, Request], dotconfig: str) -> None:
    """ConfigMismatchError naming every symbol Kconfig did not keep as requested."""
    mismatches = config_mismatches(requests, parse_dotconfig(dotconfig))
    if mismatches:
        raise ConfigMismatchError(mismatches)


def enabled_count(dotconfig: str) -> int:
    """How many symbols are =y or =m: a rough size of a config."""
    return sum(1 for value in parse_dotconfig(dotconfig).values() if value in ("y", "m"))
