# SPDX-License-Identifier: MIT
"""mdevctl's view of mdevs, parsed strictly, and the view our sysfs layer says it should show.

    shown = MdevctlView.parse(list_text, list_json, defined_text, defined_json, types_json)
    expected = expected_view(read_sysfs(MdevSysfs()), definitions)
    disagreements(expected, shown)      # [] when mdevctl and sysfs agree on every device

The formats are mdevctl 1.4.0's (src/main.rs list_command/types_command, src/mdev.rs):
- `list [--defined] --dumpjson`: `[]`, or `[{parent: [{uuid: {"mdev_type", "start", "attrs"}}]}]`
  with parents and, within one, devices sorted; `attrs` is a list of one-key {name: value}.
- `list [--defined]`: "<uuid> <parent> <type> auto|manual" per device; the active list adds
  " (defined)" to a device that has a definition, the defined list " (active)" to one that runs.
- `types --dumpjson`: `[]`, or `[{parent: [{type: {"available_instances", "device_api",
  "name"?, "description"?}}]}]`; name and description are trimmed, the description's newlines
  become ", ", and an empty one is left out.
Anything else is a MdevctlFormatError naming what was wrong: a parser that guessed would let a
changed mdevctl agree with anything.

What mdevctl should show follows from sysfs plus the definitions we made (mdevctl keeps them in
/etc/mdevctl.d/<parent>/<uuid>): an active device takes its start policy from a definition on
its parent, and a defined device counts as active only when a device with its UUID runs on the
same parent with the same type (src/mdev.rs load_from_sysfs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from harness.mdev.sysfs import MdevSysfs

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LIST_LINE = re.compile(
    rf"(?P<uuid>{_UUID.pattern}) (?P<parent>\S+) (?P<type>\S+) (?P<start>auto|manual)"
    r"(?P<flag> \((?:defined|active)\))?"
)
_DEVICE_KEYS = {"mdev_type", "start", "attrs"}
_TYPE_KEYS = {"available_instances", "device_api"}
_TYPE_OPTIONAL = {"name", "description"}


class MdevctlFormatError(ValueError):
    """mdevctl printed something that is not what its version prints."""


class Start(Enum):
    AUTO = "auto"
    MANUAL = "manual"


class Listing(Enum):
    """mdevctl's two device lists; each marks the devices that are also in the other."""

    ACTIVE = "list"
    DEFINED = "list --defined"

    @property
    def other_flag(self) -> str:
        return " (defined)" if self is Listing.ACTIVE else " (active)"


@dataclass(frozen=True)
class Entry:
    """One device in one of mdevctl's lists."""

    parent: str
    mdev_type: str
    start: Start
    in_other_list: bool  # the " (defined)" / " (active)" mark of the text list


@dataclass(frozen=True)
class TypeInfo:
    """One type as `mdevctl types` shows it; name and description None when not shown."""

    available_instances: int
    device_api: str
    name: str | None
    description: str | None


TypeKey = tuple[str, str]  # (parent, type id)


@dataclass(frozen=True)
class MdevctlView:
    """mdevctl's two device lists, by UUID, and its types (what it shows or should show)."""

    active: Mapping[str, Entry]
    defined: Mapping[str, Entry]
    types: Mapping[TypeKey, TypeInfo]

    @classmethod
    def parse(
        cls, list_text: str, list_json: str, defined_text: str, defined_json: str, types_json: str
    ) -> MdevctlView:
        return cls(
            parse_list(Listing.ACTIVE, list_text, list_json),
            parse_list(Listing.DEFINED, defined_text, defined_json),
            parse_types_json(types_json),
        )


# -- parsing ------------------------------------------------------------------------------------


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MdevctlFormatError(f"{what}: not JSON ({exc}): {text[:200]!r}") from None


def _one_key(item: object, what: str) -> tuple[str, Any]:
    if not isinstance(item, dict) or len(item) != 1:
        raise MdevctlFormatError(f"{what}: expected an object with one key, got {item!r:.200}")
    ((key, value),) = item.items()
    return key, value


def _parents(text: str, what: str) -> dict[str, list[Any]]:
    """The `[]` or `[{parent: [...]}]` wrapping that both --dumpjson outputs share."""
    top = _json(text, what)
    if top == []:
        return {}
    if not isinstance(top, list) or len(top) != 1 or not isinstance(top[0], dict) or not top[0]:
        raise MdevctlFormatError(f"{what}: expected [] or [{{parent: [...]}}], got {top!r:.200}")
    for parent, children in top[0].items():
        if not isinstance(children, list):
            raise MdevctlFormatError(f"{what}: parent {parent!r}: not a list: {children!r:.200}")
    return top[0]


def _exact_keys(obj: object, required: set[str], optional: set[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MdevctlFormatError(f"{what}: not an object: {obj!r:.200}")
    keys = set(obj)
    if not required <= keys <= required | optional:
        raise MdevctlFormatError(
            f"{what}: keys {sorted(keys)}, expected {sorted(required)}"
            + (f" and optionally {sorted(optional)}" if optional else "")
        )
    return obj


def _string(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MdevctlFormatError(f"{what}: expected a non-empty string, got {value!r:.200}")
    return value


def _check_attrs(attrs: object, what: str) -> None:
    if not isinstance(attrs, list):
        raise MdevctlFormatError(f"{what}: attrs is not a list: {attrs!r:.200}")
    for attr in attrs:
        key, value = _one_key(attr, f"{what}: attribute")
        if not isinstance(value, str):
            raise MdevctlFormatError(f"{what}: attribute {key!r}: value is not a string")


def parse_list_json(listing: Listing, text: str) -> dict[str, tuple[str, str, Start]]:
    """`mdevctl <listing> --dumpjson`: uuid -> (parent, type, start). Our checks set no attrs;
    they are checked for shape only."""
    what = f"mdevctl {listing.value} --dumpjson"
    found: dict[str, tuple[str, str, Start]] = {}
    for parent, children in _parents(text, what).items():
        for child in children:
            uuid, body = _one_key(child, f"{what}: parent {parent!r}: device")
            where = f"{what}: {parent}/{uuid}"
            if not _UUID.fullmatch(uuid):
                raise MdevctlFormatError(f"{what}: parent {parent!r}: not a UUID: {uuid!r}")
            if uuid in found:
                raise MdevctlFormatError(f"{what}: {uuid} listed twice")
            fields = _exact_keys(body, _DEVICE_KEYS, set(), where)
            try:
                start = Start(fields["start"])
            except ValueError:
                raise MdevctlFormatError(f"{where}: start {fields['start']!r}") from None
            _check_attrs(fields["attrs"], where)
            found[uuid] = (parent, _string(fields["mdev_type"], f"{where}: mdev_type"), start)
    return found


def parse_list_text(listing: Listing, text: str) -> dict[str, Entry]:
    """`mdevctl <listing>` (without -v): one device per line."""
    what = f"mdevctl {listing.value}"
    found: dict[str, Entry] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LIST_LINE.fullmatch(line)
        flag = match["flag"] if match else None
        if match is None or flag not in (None, listing.other_flag):
            raise MdevctlFormatError(f"{what}: line {number} not understood: {line!r}")
        if match["uuid"] in found:
            raise MdevctlFormatError(f"{what}: {match['uuid']} listed twice")
        found[match["uuid"]] = Entry(
            match["parent"], match["type"], Start(match["start"]), flag is not None
        )
    return found


def parse_list(listing: Listing, text: str, json_text: str) -> dict[str, Entry]:
    """One list, from its text (which alone marks the other list's devices) and its JSON,
    which must show the same devices the same way."""
    entries = parse_list_text(listing, text)
    from_json = parse_list_json(listing, json_text)
    from_text = {uuid: (e.parent, e.mdev_type, e.start) for uuid, e in entries.items()}
    if from_text != from_json:
        raise MdevctlFormatError(
            f"mdevctl {listing.value} and its --dumpjson differ: {from_text} != {from_json}"
        )
    return entries


def parse_types_json(text: str) -> dict[TypeKey, TypeInfo]:
    """`mdevctl types --dumpjson`: (parent, type) -> what it shows of the type."""
    what = "mdevctl types --dumpjson"
    found: dict[TypeKey, TypeInfo] = {}
    for parent, children in _parents(text, what).items():
        for child in children:
            type_id, body = _one_key(child, f"{what}: parent {parent!r}: type")
            where = f"{what}: {parent}/{type_id}"
            fields = _exact_keys(body, _TYPE_KEYS, _TYPE_OPTIONAL, where)
            available = fields["available_instances"]
            if type(available) is not int or available < 0:
                raise MdevctlFormatError(f"{where}: available_instances {available!r}")
            if (parent, type_id) in found:
                raise MdevctlFormatError(f"{where}: listed twice")
            found[(parent, type_id)] = TypeInfo(
                available,
                _string(fields["device_api"], f"{where}: device_api"),
                _string(fields["name"], f"{where}: name") if "name" in fields else None,
                _string(fields["description"], f"{where}: description")
                if "description" in fields
                else None,
            )
    return found


# -- what mdevctl should show -------------------------------------------------------------------


@dataclass(frozen=True)
class Definition:
    """A persistent definition we made (`mdevctl define`)."""

    uuid: str
    parent: str
    mdev_type: str
    start: Start


@dataclass(frozen=True)
class SysfsDevice:
    parent: str
    mdev_type: str


@dataclass(frozen=True)
class SysfsType:
    """A type's attributes as sysfs has them (name and description as read, None if absent)."""

    available_instances: int
    device_api: str
    name: str | None
    description: str | None


@dataclass(frozen=True)
class SysfsView:
    devices: Mapping[str, SysfsDevice]  # by UUID
    types: Mapping[TypeKey, SysfsType]


def read_sysfs(sysfs: MdevSysfs) -> SysfsView:
    """Our sysfs layer's view of every device and type, at one moment."""
    devices = {}
    for device in sysfs.devices():
        mtype = device.mdev_type
        devices[device.uuid] = SysfsDevice(mtype.parent_name, mtype.type_id)
    types = {
        (mtype.parent_name, mtype.type_id): SysfsType(
            mtype.available_instances, mtype.device_api, mtype.name, mtype.description
        )
        for mtype in sysfs.types()
    }
    return SysfsView(devices, types)


def _shown_text(text: str | None, join_lines: bool = False) -> str | None:
    """mdevctl's normalisation (environment.rs get_supported_types): trim; the description's
    lines joined with ", "; an empty text is not shown."""
    if text is None:
        return None
    shown = text.strip()
    if join_lines:
        shown = shown.replace("\n", ", ")
    return shown or None


def expected_view(sysfs: SysfsView, definitions: Iterable[Definition]) -> MdevctlView:
    """What mdevctl should show, given sysfs and the definitions that exist."""
    by_place = {(d.parent, d.uuid): d for d in definitions}
    active = {}
    for uuid, device in sysfs.devices.items():
        definition = by_place.get((device.parent, uuid))
        start = definition.start if definition else Start.MANUAL
        active[uuid] = Entry(device.parent, device.mdev_type, start, definition is not None)
    defined = {}
    for d in by_place.values():
        if d.uuid in defined:
            raise ValueError(f"{d.uuid} defined on two parents: mdevctl lists it twice")
        running = sysfs.devices.get(d.uuid) == SysfsDevice(d.parent, d.mdev_type)
        defined[d.uuid] = Entry(d.parent, d.mdev_type, d.start, running)
    types = {
        key: TypeInfo(
            t.available_instances,
            t.device_api.strip(),
            _shown_text(t.name),
            _shown_text(t.description, join_lines=True),
        )
        for key, t in sysfs.types.items()
    }
    return MdevctlView(active, defined, types)


# -- comparing ----------------------------------------------------------------------------------


def _entry_differences(listing: Listing, expected: Entry, shown: Entry, uuid: str) -> list[str]:
    found = []
    for field in ("parent", "mdev_type", "start"):
        want, got = getattr(expected, field), getattr(shown, field)
        if want != got:
            show = [v.value if isinstance(v, Start) else v for v in (got, want)]
            found.append(f"mdevctl {listing.value}: {uuid}: {field} {show[0]}, expected {show[1]}")
    if expected.in_other_list != shown.in_other_list:
        mark = listing.other_flag.strip()
        state = "marked" if shown.in_other_list else "not marked"
        found.append(
            f"mdevctl {listing.value}: {uuid}: {state} {mark}, expected "
            + ("marked" if expected.in_other_list else "not marked")
        )
    return found


def _list_differences(
    listing: Listing, expected: Mapping[str, Entry], shown: Mapping[str, Entry]
) -> list[str]:
    state = "active" if listing is Listing.ACTIVE else "defined"
    found = []
    for uuid in sorted(expected.keys() | shown.keys()):
        if uuid not in shown:
            e = expected[uuid]
            found.append(
                f"mdevctl {listing.value}: {uuid} ({e.parent}/{e.mdev_type}) missing: "
                f"it should be {state}"
            )
        elif uuid not in expected:
            s = shown[uuid]
            found.append(
                f"mdevctl {listing.value}: {uuid} ({s.parent}/{s.mdev_type}) shown {state}, "
                "but it is not"
            )
        else:
            found += _entry_differences(listing, expected[uuid], shown[uuid], uuid)
    return found


def _type_differences(
    expected: Mapping[TypeKey, TypeInfo], shown: Mapping[TypeKey, TypeInfo]
) -> list[str]:
    found = []
    for key in sorted(expected.keys() | shown.keys()):
        name = "/".join(key)
        if key not in shown:
            found.append(f"mdevctl types: {name} missing (sysfs offers it)")
        elif key not in expected:
            found.append(f"mdevctl types: {name} shown, but sysfs does not offer it")
        else:
            for field in ("available_instances", "device_api", "name", "description"):
                want, got = getattr(expected[key], field), getattr(shown[key], field)
                if want != got:
                    found.append(f"mdevctl types: {name}: {field} {got!r}, expected {want!r}")
    return found


def disagreements(expected: MdevctlView, shown: MdevctlView) -> list[str]:
    """Every difference between what mdevctl shows and what it should, one line each."""
    return (
        _list_differences(Listing.ACTIVE, expected.active, shown.active)
        + _list_differences(Listing.DEFINED, expected.defined, shown.defined)
        + _type_differences(expected.types, shown.types)
    )
