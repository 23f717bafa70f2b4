# SPDX-License-Identifier: MIT
"""harness.mdev.mdevctl on mdevctl 1.4.0's real output (tests/unit/data/mdevctl/README.md):
the parsers, agreement with the sysfs state each sample was taken in, every kind of
disagreement, and malformed output refused. Also harness.mgmt.udev_rule on the packaged rule."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from harness.mdev.fake import FakeMdevTree, FakeParentSpec, FakeTypeSpec
from harness.mdev.mdevctl import (
    Definition,
    Entry,
    Listing,
    MdevctlFormatError,
    MdevctlView,
    Start,
    SysfsDevice,
    SysfsType,
    SysfsView,
    TypeInfo,
    disagreements,
    expected_view,
    parse_list,
    parse_list_json,
    parse_list_text,
    parse_types_json,
    read_sysfs,
)
from harness.mgmt import udev_rule

DATA = Path(__file__).parent / "data" / "mdevctl"
PARENT = "vfio_harness"
SMALL = "vfio_harness_mdev-small"
LARGE = "vfio_harness_mdev-large"
A = "3a1e0c8e-5b57-4d0f-9a52-6f3c2a7d9b01"  # small, --auto
B = "8f0d2b64-1c3e-4a7f-b6d5-0e9c4f21a7c2"  # large, manual
C = "c7b9e5d3-2f4a-4e81-9c06-5d8a1b3f6e43"  # small, created through sysfs
TYPE_OF = {A: SMALL, B: LARGE, C: SMALL}
DEF_A = Definition(A, PARENT, SMALL, Start.AUTO)
DEF_B = Definition(B, PARENT, LARGE, Start.MANUAL)
DESCRIPTION = {SMALL: "small device memory", LARGE: "large device memory"}
NAME = {SMALL: "harness small", LARGE: "harness large"}
DEFINITIONS = {"empty": (), "defined": (DEF_A, DEF_B), "running": (DEF_A, DEF_B),
               "stopped": (DEF_A, DEF_B)}  # fmt: skip


def shown(state: str) -> MdevctlView:
    files = ("list.txt", "list.json", "defined.txt", "defined.json", "types.json")
    return MdevctlView.parse(*((DATA / state / name).read_text() for name in files))


def sysfs_at(state: str) -> SysfsView:
    """sysfs as it was when the sample was taken (its devices and available_instances)."""
    uuids = (DATA / state / "sysfs-devices.txt").read_text().split()
    available = dict(
        line.split() for line in (DATA / state / "sysfs-available.txt").read_text().splitlines()
    )
    return SysfsView(
        {uuid: SysfsDevice(PARENT, TYPE_OF[uuid]) for uuid in uuids},
        {
            (PARENT, t): SysfsType(int(n), "vfio-pci\n", f"{NAME[t]}\n", f"{DESCRIPTION[t]}\n")
            for t, n in available.items()
        },
    )


def expected(state: str) -> MdevctlView:
    return expected_view(sysfs_at(state), DEFINITIONS[state])


# -- the samples --------------------------------------------------------------------------------


def test_the_samples_are_mdevctl_1_4_0() -> None:
    assert (DATA / "version.txt").read_text() == "mdevctl 1.4.0\n"


@pytest.mark.parametrize("state", sorted(DEFINITIONS))
def test_mdevctl_agrees_with_sysfs_in_every_sample(state: str) -> None:
    assert disagreements(expected(state), shown(state)) == []


def test_running_sample_parses_exactly() -> None:
    view = shown("running")
    assert view.active == {
        A: Entry(PARENT, SMALL, Start.AUTO, True),
        B: Entry(PARENT, LARGE, Start.MANUAL, True),
        C: Entry(PARENT, SMALL, Start.MANUAL, False),
    }
    assert view.defined == {
        A: Entry(PARENT, SMALL, Start.AUTO, True),
        B: Entry(PARENT, LARGE, Start.MANUAL, True),
    }
    assert view.types == {
        (PARENT, LARGE): TypeInfo(6, "vfio-pci", "harness large", "large device memory"),
        (PARENT, SMALL): TypeInfo(6, "vfio-pci", "harness small", "small device memory"),
    }


def test_defined_sample_has_definitions_and_no_device() -> None:
    view = shown("defined")
    assert view.active == {}
    assert view.defined == {
        A: Entry(PARENT, SMALL, Start.AUTO, False),
        B: Entry(PARENT, LARGE, Start.MANUAL, False),
    }


def test_no_parent_means_no_types() -> None:
    assert parse_types_json((DATA / "types-no-parent.json").read_text()) == {}
    assert parse_list_json(Listing.ACTIVE, (DATA / "empty" / "list.json").read_text()) == {}


# -- each kind of disagreement ------------------------------------------------------------------


def test_a_device_mdevctl_does_not_list_is_named() -> None:
    # sysfs runs A, B and C; mdevctl shows them stopped.
    found = disagreements(expected("running"), shown("stopped"))
    assert found == [
        f"mdevctl list: {A} ({PARENT}/{SMALL}) missing: it should be active",
        f"mdevctl list: {B} ({PARENT}/{LARGE}) missing: it should be active",
        f"mdevctl list: {C} ({PARENT}/{SMALL}) missing: it should be active",
        f"mdevctl list --defined: {A}: not marked (active), expected marked",
        f"mdevctl list --defined: {B}: not marked (active), expected marked",
        f"mdevctl types: {PARENT}/{LARGE}: available_instances 8, expected 6",
        f"mdevctl types: {PARENT}/{SMALL}: available_instances 8, expected 6",
    ]


def test_a_device_listed_but_not_in_sysfs_is_named() -> None:
    found = disagreements(expected("defined"), shown("running"))
    assert f"mdevctl list: {C} ({PARENT}/{SMALL}) shown active, but it is not" in found
    assert f"mdevctl list --defined: {A}: marked (active), expected not marked" in found


def test_definitions_mdevctl_lost_or_invented_are_named() -> None:
    assert disagreements(expected("defined"), shown("empty")) == [
        f"mdevctl list --defined: {A} ({PARENT}/{SMALL}) missing: it should be defined",
        f"mdevctl list --defined: {B} ({PARENT}/{LARGE}) missing: it should be defined",
    ]
    assert disagreements(expected("empty"), shown("defined")) == [
        f"mdevctl list --defined: {A} ({PARENT}/{SMALL}) shown defined, but it is not",
        f"mdevctl list --defined: {B} ({PARENT}/{LARGE}) shown defined, but it is not",
    ]


def test_an_active_device_not_marked_defined_is_named() -> None:
    # C runs and, in this expectation, has a definition mdevctl does not mark.
    definition = Definition(C, PARENT, SMALL, Start.MANUAL)
    want = expected_view(sysfs_at("running"), (DEF_A, DEF_B, definition))
    found = disagreements(want, shown("running"))
    assert f"mdevctl list: {C}: not marked (defined), expected marked" in found
    assert f"mdevctl list --defined: {C} ({PARENT}/{SMALL}) missing: it should be defined" in found


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("parent", "other_parent", f"parent {PARENT}, expected other_parent"),
        ("mdev_type", LARGE, f"mdev_type {SMALL}, expected {LARGE}"),
        ("start", Start.MANUAL, "start auto, expected manual"),
    ],
)
def test_a_field_of_a_device_that_differs_is_named(field: str, value: Any, message: str) -> None:
    want = expected("running")
    changed = dataclasses.replace(want.active[A], **{field: value})
    want = dataclasses.replace(want, active={**want.active, A: changed})
    assert disagreements(want, shown("running")) == [f"mdevctl list: {A}: {message}"]


def test_the_start_policy_of_a_definition_is_compared() -> None:
    # Defined manual, shown auto: both lists say so.
    manual_a = dataclasses.replace(DEF_A, start=Start.MANUAL)
    found = disagreements(expected_view(sysfs_at("running"), (manual_a, DEF_B)), shown("running"))
    assert found == [
        f"mdevctl list: {A}: start auto, expected manual",
        f"mdevctl list --defined: {A}: start auto, expected manual",
    ]


def test_a_defined_device_running_with_another_type_is_not_active() -> None:
    # mdevctl (load_from_sysfs) only calls a definition active if parent and type match.
    other = dataclasses.replace(DEF_B, mdev_type=SMALL)
    view = expected_view(sysfs_at("running"), (DEF_A, other))
    assert view.defined[B] == Entry(PARENT, SMALL, Start.MANUAL, False)
    assert view.active[B] == Entry(PARENT, LARGE, Start.MANUAL, True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("available_instances", 7, "available_instances 6, expected 7"),
        ("device_api", "vfio-ccw", "device_api 'vfio-pci', expected 'vfio-ccw'"),
        ("name", None, "name 'harness small', expected None"),
        ("description", "other", "description 'small device memory', expected 'other'"),
    ],
)
def test_a_field_of_a_type_that_differs_is_named(field: str, value: Any, message: str) -> None:
    want = expected("running")
    key = (PARENT, SMALL)
    changed = dataclasses.replace(want.types[key], **{field: value})
    want = dataclasses.replace(want, types={**want.types, key: changed})
    assert disagreements(want, shown("running")) == [f"mdevctl types: {PARENT}/{SMALL}: {message}"]


def test_types_missing_or_extra_are_named() -> None:
    want = expected("empty")
    extra = (PARENT, "vfio_harness_mdev-huge")
    more = dataclasses.replace(want, types={**want.types, extra: want.types[(PARENT, SMALL)]})
    assert disagreements(more, shown("empty")) == [
        f"mdevctl types: {PARENT}/vfio_harness_mdev-huge missing (sysfs offers it)"
    ]
    assert disagreements(expected_view(SysfsView({}, {}), ()), shown("empty")) == [
        f"mdevctl types: {PARENT}/{LARGE} shown, but sysfs does not offer it",
        f"mdevctl types: {PARENT}/{SMALL} shown, but sysfs does not offer it",
    ]


# -- what mdevctl should show, from our sysfs layer ---------------------------------------------


def test_read_sysfs_and_mdevctl_normalisation(tmp_path: Path) -> None:
    types = (
        FakeTypeSpec("large", " harness large \n", "large device\nmemory\n"),
        FakeTypeSpec("small", "harness small", None),
        FakeTypeSpec("blank", "   ", "\n"),
    )
    spec = FakeParentSpec(PARENT, "vfio_harness_mdev", "vfio_harness_mdev", types=types)
    tree = FakeMdevTree(tmp_path, [spec])
    tree.sysfs().create(SMALL, C)
    sysfs = read_sysfs(tree.sysfs())
    assert sysfs.devices == {C: SysfsDevice(PARENT, SMALL)}
    view = expected_view(sysfs, (DEF_A,))
    # mdevctl trims, joins a description's lines with ", " and leaves out what is empty.
    assert view.types == {
        (PARENT, LARGE): TypeInfo(3, "vfio-pci", "harness large", "large device, memory"),
        (PARENT, SMALL): TypeInfo(3, "vfio-pci", "harness small", None),
        (PARENT, "vfio_harness_mdev-blank"): TypeInfo(3, "vfio-pci", None, None),
    }
    assert view.active == {C: Entry(PARENT, SMALL, Start.MANUAL, False)}
    assert view.defined == {A: Entry(PARENT, SMALL, Start.AUTO, False)}


# -- malformed output ---------------------------------------------------------------------------


def _list_json(body: object) -> str:
    return json.dumps([{PARENT: [{A: body}]}])


GOOD_DEVICE = {"mdev_type": SMALL, "start": "auto", "attrs": []}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not JSON"),
        ("{}", "expected [] or"),
        ("[{}]", "expected [] or"),
        ("[[]]", "expected [] or"),
        (json.dumps([{PARENT: {}}]), "not a list"),
        (json.dumps([{PARENT: [{A: GOOD_DEVICE, B: GOOD_DEVICE}]}]), "one key"),
        (json.dumps([{PARENT: [{A.upper(): GOOD_DEVICE}]}]), "not a UUID"),
        (_list_json({**GOOD_DEVICE, "extra": 1}), "keys"),
        (_list_json({"mdev_type": SMALL, "start": "auto"}), "keys"),
        (_list_json({**GOOD_DEVICE, "start": "Auto"}), "start 'Auto'"),
        (_list_json({**GOOD_DEVICE, "mdev_type": ""}), "mdev_type"),
        (_list_json({**GOOD_DEVICE, "attrs": {}}), "attrs is not a list"),
        (_list_json({**GOOD_DEVICE, "attrs": [{"a": 1}]}), "value is not a string"),
        (json.dumps([{PARENT: [{A: GOOD_DEVICE}], "p2": [{A: GOOD_DEVICE}]}]), "listed twice"),
    ],
)
def test_malformed_list_json_is_refused(text: str, why: str) -> None:
    with pytest.raises(MdevctlFormatError, match=re.escape(why)):
        parse_list_json(Listing.ACTIVE, text)


def _types_json(body: object) -> str:
    return json.dumps([{PARENT: [{SMALL: body}]}])


GOOD_TYPE = {"available_instances": 1, "device_api": "vfio-pci"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[", "not JSON"),
        (_types_json({**GOOD_TYPE, "available_instances": -1}), "available_instances -1"),
        (_types_json({**GOOD_TYPE, "available_instances": "1"}), "available_instances '1'"),
        (_types_json({**GOOD_TYPE, "available_instances": True}), "available_instances True"),
        (_types_json({"device_api": "vfio-pci"}), "keys"),
        (_types_json({**GOOD_TYPE, "pretty": "x"}), "keys"),
        (_types_json({**GOOD_TYPE, "name": ""}), "name"),
        (_types_json({**GOOD_TYPE, "description": 3}), "description"),
    ],
)
def test_malformed_types_json_is_refused(text: str, why: str) -> None:
    with pytest.raises(MdevctlFormatError, match=re.escape(why)):
        parse_types_json(text)


@pytest.mark.parametrize(
    ("listing", "line"),
    [
        (Listing.ACTIVE, f"{A} {PARENT} {SMALL} auto (active)"),  # the other list's mark
        (Listing.DEFINED, f"{A} {PARENT} {SMALL} auto (defined)"),
        (Listing.ACTIVE, f"{A} {PARENT} {SMALL} always"),
        (Listing.ACTIVE, f"{A} {PARENT} {SMALL}"),
        (Listing.ACTIVE, f"{A}  {PARENT} {SMALL} auto"),
        (Listing.ACTIVE, f"{A.upper()} {PARENT} {SMALL} auto"),
        (Listing.ACTIVE, f"{A} {PARENT} {SMALL} auto\n{A} {PARENT} {SMALL} auto"),
    ],
)
def test_malformed_list_text_is_refused(listing: Listing, line: str) -> None:
    with pytest.raises(MdevctlFormatError):
        parse_list_text(listing, line + "\n")


def test_a_list_whose_text_and_json_differ_is_refused() -> None:
    text = (DATA / "running" / "list.txt").read_text()
    with pytest.raises(MdevctlFormatError, match="its --dumpjson differ"):
        parse_list(Listing.ACTIVE, text, (DATA / "stopped" / "list.json").read_text())


# -- the udev rule ------------------------------------------------------------------------------


def test_the_packaged_rule_calls_a_program_the_package_does_not_install() -> None:
    rule = (DATA / "60-mdevctl.rules").read_text()
    assert udev_rule.rule_program(rule) == "/usr/sbin/mdevctl"
    fixed = udev_rule.with_program(rule, "/usr/bin/mdevctl")
    assert udev_rule.rule_program(fixed) == "/usr/bin/mdevctl"
    assert fixed.count("/usr/bin/mdevctl start-parent-mdevs %k") == 2
    assert fixed == rule.replace("/usr/sbin/mdevctl", "/usr/bin/mdevctl")


@pytest.mark.parametrize(
    "rule",
    ["", 'RUN+="/a/mdevctl start-parent-mdevs %k"\nRUN+="/b/mdevctl start-parent-mdevs %k"'],
)
def test_a_rule_without_exactly_one_program_is_refused(rule: str) -> None:
    with pytest.raises(udev_rule.RuleError):
        udev_rule.rule_program(rule)
