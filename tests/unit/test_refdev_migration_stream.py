# SPDX-License-Identifier: MIT
"""The Python migration-stream codec against kmod/migration.c: layouts, constants, round trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.refdev import contract as c
from harness.refdev import migration_stream as ms
from harness.uapi.raw import vfio as v

MIGRATION_C = Path(__file__).resolve().parents[2] / "kmod" / "migration.c"
SIZES = {"u8": 1, "__le16": 2, "__le32": 4, "__le64": 8}
ARRAYS = {"HMDEV_CONFIG_SIZE": c.CONFIG_SIZE, "VFIO_PCI_NUM_IRQS": v.VFIO_PCI_NUM_IRQS}


def c_source() -> str:
    return MIGRATION_C.read_text(encoding="utf-8")


def c_struct_fields(name: str) -> list[tuple[str, int]]:
    """(field, bytes) of `struct name` in migration.c: all fields are fixed-size LE types."""
    body = re.search(rf"struct {name} \{{(.*?)\n\}};", c_source(), re.S)
    assert body, f"struct {name} not found in {MIGRATION_C}"
    fields = []
    for line in body.group(1).splitlines():
        m = re.match(r"\s*(\w+)\s+(\w+)(?:\[(\w+)\])?;", line)
        if m:
            count = ARRAYS[m.group(3)] if m.group(3) else 1
            fields.append((m.group(2), SIZES[m.group(1)] * count))
    return fields


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("hmdev_mig_rec", ms.REC),
        ("hmdev_mig_header", ms.HEADER),
        ("hmdev_mig_config", ms.CONFIG),
        ("hmdev_mig_irqs", ms.IRQS),
        ("hmdev_mig_end", ms.END),
    ],
)
def test_layouts_match_the_c_structs(name: str, layout: object) -> None:
    fields = c_struct_fields(name)
    assert sum(size for _, size in fields) == layout.size  # type: ignore[attr-defined]
    if name == "hmdev_mig_rec":
        crc_at = sum(size for field, size in fields[: [f for f, _ in fields].index("crc")])
        assert crc_at == ms.REC_HEAD.size, "the CRC covers the header up to crc"


def define(name: str) -> str:
    m = re.search(rf"^#define {name}\s+(\S+)", c_source(), re.M)
    assert m, f"#define {name} not found"
    return m.group(1)


def test_constants_match_the_c_defines() -> None:
    assert int(define("HMDEV_MIG_MAGIC"), 0) == ms.MAGIC
    assert int(define("HMDEV_MIG_VERSION"), 0) == ms.STREAM_VERSION
    assert define("HMDEV_MIG_CHUNK") == "SZ_64K" and ms.CHUNK == 64 * 1024
    assert define("HMDEV_MIG_IRQ_MASKED") == "BIT(0)" and ms.IRQ_MASKED == 1
    assert define("HMDEV_MIG_IRQ_ENABLED") == "BIT(1)" and ms.IRQ_ENABLED == 2
    tags = dict(re.findall(r"HMDEV_MIG_TAG_(\w+) = (\d+)", c_source()))
    assert {k: int(n) for k, n in tags.items()} == {t.name: t.value for t in ms.Tag}


def test_round_trip_and_damage() -> None:
    header = ms.HEADER.pack(ms.MAGIC, ms.STREAM_VERSION, 0, ms.CHUNK, ms.CHUNK, 256, 4096, 5, 0)
    records = [
        ms.Record(ms.Tag.HEADER, header),
        ms.Record(ms.Tag.MEM, bytes(range(256)) * 256, offset=0),
        ms.Record(ms.Tag.END, b""),
    ]
    stream = ms.encode(records)
    parsed = ms.parse_stream(stream)
    assert [r.tag for r in parsed] == [ms.Tag.HEADER, ms.Tag.MEM, ms.Tag.END]
    assert [r.seq for r in parsed] == [0, 1, 2]
    before_end = len(stream) - ms.record_size(ms.END.size)
    assert ms.END.unpack(parsed[2].payload) == (before_end, 2, 0)
    damaged = bytearray(stream)
    damaged[ms.REC.size + 3] ^= 1
    with pytest.raises(ms.StreamError, match="bad CRC"):
        ms.parse_stream(bytes(damaged))
    with pytest.raises(ms.StreamError, match="inside a record header"):
        ms.parse_stream(stream + b"\0" * 5)


def test_sizes_of_whole_streams() -> None:
    small = 1 << 20
    assert ms.initial_size(small) == ms.record_size(ms.HEADER.size) + 16 * ms.record_size(ms.CHUNK)
    tail = sum(ms.record_size(n) for n in (ms.CONFIG.size, c.BAR0_SIZE, ms.IRQS.size, ms.END.size))
    assert ms.stop_copy_size(small) == ms.initial_size(small) + tail
