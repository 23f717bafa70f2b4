# SPDX-License-Identifier: MIT
"""The reference device's migration stream (kmod/migration.c), read and written from Python.

Records of {u16 tag, u16 flags, u32 length, u64 offset, u32 seq, u32 crc} followed by the
payload, little endian; the CRC is zlib's crc32 of the record header up to `crc` and the
payload. A stream is HEADER, the MEM chunks of device memory, CONFIG, REGS, IRQS and END.
tests/unit/test_refdev_migration_stream.py checks these layouts and constants against the C
source, so they cannot drift apart.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from harness.refdev import contract as c
from harness.uapi.raw import vfio as v

REC = struct.Struct("<HHIQII")  # struct hmdev_mig_rec
REC_HEAD = struct.Struct("<HHIQI")  # the part of it the CRC covers
HEADER = struct.Struct("<IIIIQHHHH")  # struct hmdev_mig_header
CONFIG = struct.Struct(f"<{c.CONFIG_SIZE}sIIQ")  # struct hmdev_mig_config
IRQS = struct.Struct(f"<{v.VFIO_PCI_NUM_IRQS}I")  # struct hmdev_mig_irqs
END = struct.Struct("<QII")  # struct hmdev_mig_end: bytes and records before it, reserved
MAGIC = 0x47494D48  # "HMIG"
STREAM_VERSION = 1
CHUNK = 64 * 1024
IRQ_MASKED = 1 << 0
IRQ_ENABLED = 1 << 1
CONFIG_PAYLOAD = CONFIG.size
IRQS_PAYLOAD = IRQS.size


class StreamError(ValueError):
    """A stream that does not parse: a short record or a bad CRC."""


class Tag(enum.IntEnum):
    HEADER = 1
    MEM = 2
    CONFIG = 3
    REGS = 4
    IRQS = 5
    END = 6


class Header(NamedTuple):
    magic: int
    version: int
    type_index: int
    chunk_size: int
    mem_size: int
    config_size: int
    bar0_size: int
    nr_irqs: int
    reserved: int


@dataclass(frozen=True)
class Record:
    tag: int
    payload: bytes
    offset: int = 0
    flags: int = 0
    seq: int = 0
    length: int | None = None  # the length field, when it is to lie about the payload


def record_size(payload: int) -> int:
    return REC.size + payload


def initial_size(mem_size: int) -> int:
    """Bytes of a stream's HEADER and MEM records (the initial data of a pre-copy)."""
    chunks = [min(CHUNK, mem_size - off) for off in range(0, mem_size, CHUNK)]
    return record_size(HEADER.size) + sum(record_size(n) for n in chunks)


def stop_copy_size(mem_size: int) -> int:
    """Bytes of a whole STOP_COPY stream of a device with `mem_size` bytes of BAR2."""
    tail = (CONFIG_PAYLOAD, c.BAR0_SIZE, IRQS_PAYLOAD, END.size)
    return initial_size(mem_size) + sum(record_size(n) for n in tail)


def parse_stream(stream: bytes) -> list[Record]:
    """The records of `stream`; StreamError on a short record or a bad CRC."""
    records: list[Record] = []
    pos = 0
    while pos < len(stream):
        if pos + REC.size > len(stream):
            raise StreamError(f"stream ends inside a record header at byte {pos}")
        tag, flags, length, offset, seq, crc = REC.unpack_from(stream, pos)
        payload = stream[pos + REC.size : pos + REC.size + length]
        if len(payload) != length:
            raise StreamError(f"record {seq}: {len(payload)} payload bytes, header says {length}")
        if zlib.crc32(stream[pos : pos + REC_HEAD.size] + payload) != crc:
            raise StreamError(f"record {seq}: bad CRC")
        records.append(Record(tag, payload, offset, flags, seq))
        pos += REC.size + length
    return records


def encode(records: Iterable[Record], *, renumber: bool = True, fix_end: bool = True) -> bytes:
    """A stream of `records` with valid CRCs; seq renumbered and END recomputed unless told."""
    out = bytearray()
    for index, rec in enumerate(records):
        payload = rec.payload
        if rec.tag == Tag.END and fix_end:
            payload = END.pack(len(out), index, 0)
        length = len(payload) if rec.length is None else rec.length
        seq = index if renumber else rec.seq
        head = REC_HEAD.pack(rec.tag, rec.flags, length, rec.offset, seq)
        out += head + struct.pack("<I", zlib.crc32(head + payload)) + payload
    return bytes(out)
