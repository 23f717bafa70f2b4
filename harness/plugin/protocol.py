# SPDX-License-Identifier: MIT
"""The line protocol between the host plugin and the guest runner (harness.plugin.guest_runner).

One JSON object per line, UTF-8. Host to guest:

    {"run": NODEID, "next": NODEID or null}   run that item; "next" is the item the host runs
                                              after it on this runner (pytest's nextitem), so
                                              fixtures of wider scope are torn down exactly
                                              when pytest would tear them down
    {"quit": true}                            tear the session down and exit

Guest to host:

    {"ready": {...}}                          once, after collection (RunnerInfo's fields)
    {"report": {...}}                         each report of the running item as it is made,
                                              as pytest_report_to_serializable made it
    {"done": {...}}                           the item finished (ItemDone's fields)
    {"error": "..."}                          a request the runner could not understand

Standard library only: this module runs in guests.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, Any]


class ProtocolError(ValueError):
    """A line that is not one of the protocol's messages."""


def encode(message: Message) -> bytes:
    """One message as a line, without the newline. Unknown objects become their str()."""
    return json.dumps(message, separators=(",", ":"), default=str).encode()


def decode(line: bytes | str) -> Message:
    try:
        message = json.loads(line)
    except ValueError as err:
        raise ProtocolError(f"not JSON: {line[:200]!r}") from err
    if not isinstance(message, dict) or not message:
        raise ProtocolError(f"not a protocol message (a JSON object): {line[:200]!r}")
    return message


def run_request(nodeid: str, next_nodeid: str | None) -> Message:
    return {"run": nodeid, "next": next_nodeid}


QUIT: Message = {"quit": True}


@dataclass(frozen=True)
class RunnerInfo:
    """What the runner says once it has collected the suite."""

    pytest_version: str
    python_version: str
    kernel_release: str
    items: int
    collect_problems: list[str] = field(default_factory=list)  # nodeid: reason, per bad file

    def message(self) -> Message:
        return {"ready": asdict(self)}

    @classmethod
    def from_message(cls, body: Any) -> RunnerInfo:
        return cls(**_fields(cls, body))


@dataclass(frozen=True)
class ItemDone:
    """The end of one item: the kernel's messages around it and the taint mask."""

    nodeid: str
    kernel_log: list[str]  # new /dev/kmsg lines from the item's start to its end
    before_log: list[str]  # lines that came between the previous item and this one
    taint_before: int
    taint_after: int
    kernel_log_error: str | None = None  # why the kernel log could not be read, if it could not
    # kmemleak's reports from the scan after the item (the last of its module), if one ran
    kmemleak: list[str] = field(default_factory=list)
    lockdep_off: bool = False  # lockdep reported during the item and has switched itself off

    def message(self) -> Message:
        return {"done": asdict(self)}

    @classmethod
    def from_message(cls, body: Any) -> ItemDone:
        return cls(**_fields(cls, body))


def _fields(cls: type, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProtocolError(f"{cls.__name__}: expected an object, got {body!r}")
    known = set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    # Fields a newer runner added are ignored, so host and guest may differ a little.
    return {key: value for key, value in body.items() if key in known}
