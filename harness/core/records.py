# SPDX-License-Identifier: MIT
"""The JSON record a cache entry carries (manifest.json, record.json, bundle.json): a frozen
dataclass, written atomically as the entry's last file (so it marks a complete entry) and read
back strictly. A record that is not JSON, of another format, or with fields missing or unknown
is a RecordError that says how to get a good one (usually: delete the entry to rebuild it).

    write_record(manifest, directory / "manifest.json")
    manifest = read_record(ImageManifest, directory / "manifest.json", fmt=1, redo="...")
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")


class RecordError(ValueError):
    """A record is missing, unreadable, or not what this version of the harness writes."""


def record_json(record: object, **extra: object) -> str:
    """The record (a dataclass) as sorted, indented JSON, with `extra` derived fields."""
    data = dataclasses.asdict(record)  # type: ignore[call-overload]
    data.update(extra)
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_record(record: object, path: Path, **extra: object) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(record_json(record, **extra), encoding="utf-8")
    tmp.replace(path)
    return path


def parse_record(
    cls: type[R],
    text: str,
    *,
    source: object,
    fmt: int,
    redo: str,
    ignored: Collection[str] = (),
    error: type[RecordError] = RecordError,
) -> R:
    """`cls` from `text`; JSON lists become tuples where `cls` declares a tuple. `ignored`:
    derived fields the writer adds. A field with a default may be absent."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{source}: not JSON ({err}); {redo}") from err
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{source}: not a format-{fmt} record; {redo}")
    for name in ignored:
        data.pop(name, None)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    required = {
        n
        for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing, unknown = required - set(data), set(data) - set(fields)
    if missing or unknown:
        raise error(
            f"{source}: fields missing {sorted(missing)} or unknown {sorted(unknown)}; {redo}"
        )
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if isinstance(value, list) and typing.get_origin(hints[name]) is tuple:
            data[name] = tuple(value)
    return cls(**data)


def read_record(
    cls: type[R],
    path: Path,
    *,
    fmt: int,
    redo: str,
    ignored: Collection[str] = (),
    error: type[RecordError] = RecordError,
) -> R:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror}); {redo}") from err
    return parse_record(cls, text, source=path, fmt=fmt, redo=redo, ignored=ignored, error=error)
