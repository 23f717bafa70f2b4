# SPDX-License-Identifier: MIT
"""The fuzzer's program model: what it generates from a device's profile, and how it mutates."""

from __future__ import annotations

import json
import random
from typing import Any

from harness.fuzz.program import MAX_OPS, OPS, Generator, Profile, Program, describe

REFDEV = {
    "regions": [
        {"index": 0, "size": 4096, "flags": 3, "mmap_areas": []},
        {"index": 2, "size": 1 << 20, "flags": 15, "mmap_areas": [[0, 1 << 19]]},
        {"index": 7, "size": 256, "flags": 3, "mmap_areas": []},
    ],
    "num_regions": 9,
    "irqs": [[0, 1], [1, 1]],
    "num_irqs": 5,
    "migration": 5,
    "modes": ["type1", "iommufd"],
    "refdev": True,
    "mem_size": 1 << 20,
}
# A vendor's device without migration, mmap or our DMA engine (mtty's shape).
PLAIN = {
    "regions": [{"index": 0, "size": 8, "flags": 3, "mmap_areas": []}],
    "num_regions": 9,
    "irqs": [[0, 1]],
    "num_irqs": 5,
    "migration": 0,
    "modes": ["type1"],
    "refdev": False,
}


def programs(profile: dict[str, Any], count: int = 400, seed: int = 7) -> list[Program]:
    gen = Generator(Profile.from_json(profile), random.Random(seed))
    return [gen.program() for _ in range(count)]


def test_programs_use_every_op_the_device_offers() -> None:
    seen = {op["op"] for program in programs(REFDEV) for op in program}
    assert seen == set(OPS)


def test_a_device_without_migration_mmap_or_our_dma_gets_none_of_those() -> None:
    seen = {op["op"] for program in programs(PLAIN) for op in program}
    never = {"dma", "mig_set", "mig_read", "mig_write", "precopy_info", "data_size", "mmap"}
    assert not seen & never
    assert {"open", "region_read", "region_write", "set_irqs", "reset"} <= seen
    assert {op["mode"] for p in programs(PLAIN) for op in p if op["op"] == "open"} == {"type1"}


def test_region_offsets_reach_the_last_bytes_and_past_the_end() -> None:
    accesses = [
        op for p in programs(REFDEV, 2000) for op in p if op["op"] == "region_write"
        and op["index"] == 2 and op["width"] == 4
    ]  # fmt: skip
    offsets = {op["offset"] for op in accesses}
    size = 1 << 20
    assert size - 4 in offsets  # the last access that fits
    assert size in offsets  # one past the end
    assert any(o < size - 4096 for o in offsets)  # and inside


def test_programs_are_plain_json_and_replay_identically_from_a_seed() -> None:
    first = programs(REFDEV, 50, seed=3)
    assert json.loads(json.dumps(first)) == first
    assert programs(REFDEV, 50, seed=3) == first
    assert programs(REFDEV, 50, seed=4) != first


def test_mutation_changes_a_program_within_the_length_limit() -> None:
    gen = Generator(Profile.from_json(REFDEV), random.Random(1))
    parent = gen.program()
    donor = gen.program()
    children = [gen.mutate(parent, lambda: donor) for _ in range(200)]
    assert all(1 <= len(child) <= MAX_OPS for child in children)
    assert sum(child != parent for child in children) > 150
    assert parent == json.loads(json.dumps(parent))  # the parent itself is untouched


def test_profile_round_trips_through_json() -> None:
    profile = Profile.from_json(REFDEV)
    assert Profile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


def test_describe_shows_numbers_in_hex() -> None:
    line = describe({"op": "region_write", "index": 2, "offset": 65528, "width": 8, "keep": True})
    assert line == "region_write index=0x2 offset=0xfff8 width=0x8 keep=True"
