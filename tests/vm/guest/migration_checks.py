# SPDX-License-Identifier: MIT
"""The in-guest half of tests/vm/test_migration.py: VFIO migration v2 of the reference device.

Run with the module already loaded (harness.vm.guest_python). It creates its own devices, runs
every check in CHECKS and removes the devices again. Each result is one JSON line on stdout,
printed as soon as the check finishes (so a guest that dies half-way still says how far it got):

    {"check": "stop_copy.registers", "status": "ok" | "fail" | "n/a", "detail": "..."}

plus facts the host wants ({"fact": "migration_flags", "value": 7}). Every id in CHECKS gets
exactly one line: a check that could not run because something it needs failed is "fail" with
"not run: ..." as its detail; "n/a" is only used for the PRE_COPY checks on a device whose
migration flags lack VFIO_MIGRATION_PRE_COPY. The host parametrizes its tests over CHECKS and
asserts each line.

The stream codec is harness.refdev.migration_stream (checked against kmod/migration.c).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import random
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from harness.core.checks import describe, differ, equal, expect_errno, same_bytes
from harness.core.closing import Closing
from harness.mdev import MdevDevice, MdevSysfs, MdevType
from harness.refdev import Direction, Method, RefDevice
from harness.refdev import contract as c
from harness.refdev import pci_config as pci
from harness.refdev import registers as r
from harness.refdev.device import dma_command
from harness.refdev.migration_stream import (
    CHUNK,
    CONFIG_PAYLOAD,
    END,
    HEADER,
    IRQS_PAYLOAD,
    MAGIC,
    REC,
    STREAM_VERSION,
    Header,
    Record,
    Tag,
    encode,
    initial_size,
    parse_stream,
    record_size,
    stop_copy_size,
)
from harness.uapi import PAGE_SIZE, DmaBuffer, Migration, MigrationDataFd, MigState, open_type1
from harness.uapi.errors import errno_name
from harness.uapi.raw import vfio as v

# -- the stream format (kmod/migration.c) ------------------------------------------------------

# BAR0 below this is device state, migrated; from here on the registers count what happened
# since the device was opened (PINNED_PAGES .. BAR2_TRAPPED) and the target keeps its own.
# Only PINNED_PAGES .. RESET_COUNT are compared: the access counters after them count every
# read of the device, the checks' own snapshots included.
SESSION_REGS = r.REG_PINNED_PAGES
SESSION_REGS_END = r.REG_RESET_COUNT + 4
REGS_COMPARED = 0x100  # BAR0 bytes snapshots compare (every register lies below)


@dataclass(frozen=True)
class Saved:
    """A STOP_COPY stream as read from a source device, and ways to spoil it."""

    data: bytes
    records: tuple[Record, ...]

    @classmethod
    def of(cls, data: bytes) -> Saved:
        return cls(data, tuple(parse_stream(data)))

    def index(self, tag: Tag, nth: int = 0) -> int:
        return [i for i, rec in enumerate(self.records) if rec.tag == tag][nth]

    def payload(self, tag: Tag) -> bytes:
        return self.records[self.index(tag)].payload

    def flip(self, pos: int) -> bytes:
        """The stream with one bit changed at byte `pos` (the CRC no longer matches)."""
        data = bytearray(self.data)
        data[pos] ^= 0x40
        return bytes(data)

    def with_header(self, **fields: int) -> bytes:
        header = Header(*HEADER.unpack(self.records[0].payload))._replace(**fields)
        return self.with_record(0, payload=HEADER.pack(*header))

    def with_record(self, index: int, **changes: Any) -> bytes:
        """Valid CRCs, one record changed (seq renumbered unless the change is to seq)."""
        records = list(self.records)
        records[index] = dataclasses.replace(records[index], **changes)
        return encode(records, renumber="seq" not in changes)

    def with_bits(self, tag: Tag, offset: int, bits: int) -> bytes:
        """Valid CRCs, byte `offset` of the `tag` record's payload XORed with `bits`."""
        payload = bytearray(self.payload(tag))
        payload[offset] ^= bits
        return self.with_record(self.index(tag), payload=bytes(payload))


# The refused streams: id -> (what is wrong with it, how to make it from a good stream). The ids
# with "(valid CRC)" in their text are re-encoded, so only the named defect is wrong.
Corruption = tuple[str, Callable[[Saved], bytes]]
CORRUPTIONS: dict[str, Corruption] = {
    "empty_stream": ("no data at all", lambda s: b""),
    "crc_header_bit_flip": ("one bit flipped in the header's magic", lambda s: s.flip(24)),
    "crc_bar2_bit_flip": ("one bit flipped in BAR2 data", lambda s: s.flip(len(s.data) // 2)),
    "crc_length_bit_flip": (
        "one bit flipped in the first MEM record's length",
        lambda s: s.flip(record_size(HEADER.size) + 4),
    ),
    "truncated_10_bytes": ("the last 10 bytes cut off", lambda s: s.data[:-10]),
    "end_missing": ("the END record dropped", lambda s: s.data[: -record_size(END.size)]),
    "trailing_bytes": ("8 zero bytes after END", lambda s: s.data + bytes(8)),
    "stream_twice": ("a second copy of the stream after END", lambda s: s.data + s.data),
    "header_bad_magic": ("bad magic (valid CRC)", lambda s: s.with_header(magic=0x12345678)),
    "header_version_2": ("stream version 2 (valid CRC)", lambda s: s.with_header(version=2)),
    "header_other_type": ("type index 1 (valid CRC)", lambda s: s.with_header(type_index=1)),
    "header_mem_size": ("mem_size 2 MiB (valid CRC)", lambda s: s.with_header(mem_size=2 << 20)),
    "header_chunk_size": ("chunk size 4 KiB (valid CRC)", lambda s: s.with_header(chunk_size=4096)),
    "header_reserved": ("reserved field set (valid CRC)", lambda s: s.with_header(reserved=1)),
    "mem_offset_at_end": (
        "MEM offset = BAR2 size (valid CRC)",
        lambda s: s.with_record(s.index(Tag.MEM), offset=c.SMALL.mem_size),
    ),
    "mem_offset_2_63": (
        "MEM offset 2^63 (valid CRC)",
        lambda s: s.with_record(s.index(Tag.MEM), offset=1 << 63),
    ),
    "mem_offset_unaligned": (
        "MEM offset not on a chunk boundary (valid CRC)",
        lambda s: s.with_record(s.index(Tag.MEM), offset=100),
    ),
    "mem_length_4g": (
        "MEM length field 4 GiB - 1 (valid CRC)",
        lambda s: s.with_record(s.index(Tag.MEM), length=0xFFFFFFFF),
    ),
    "unknown_tag": ("a record with tag 9 (valid CRC)", lambda s: s.with_record(1, tag=9)),
    "flags_set": ("a record with flags 1 (valid CRC)", lambda s: s.with_record(1, flags=1)),
    "seq_skipped": ("a record's seq skips ahead (valid CRC)", lambda s: s.with_record(1, seq=7)),
    "mem_chunk_missing": (
        "one MEM chunk left out (valid CRC)",
        lambda s: encode(x for i, x in enumerate(s.records) if i != s.index(Tag.MEM, 3)),
    ),
    "regs_missing": (
        "no REGS record (valid CRC)",
        lambda s: encode(x for x in s.records if x.tag != Tag.REGS),
    ),
    "config_twice": (
        "CONFIG sent twice (valid CRC)",
        lambda s: encode(
            [*s.records[:-1], s.records[s.index(Tag.CONFIG)], s.records[-1]],
        ),
    ),
    "header_not_first": (
        "HEADER after the first MEM record (valid CRC)",
        lambda s: encode([s.records[1], s.records[0], *s.records[2:]]),
    ),
    "end_wrong_count": (
        "END with a wrong byte count (valid CRC)",
        lambda s: encode(
            [*s.records[:-1], Record(Tag.END, END.pack(5, len(s.records) - 1, 0))],
            fix_end=False,
        ),
    ),
    "regs_other_id": (
        "REGS with another read-only ID register (valid CRC)",
        lambda s: s.with_record(s.index(Tag.REGS), payload=b"\1\2\3\4" + s.payload(Tag.REGS)[4:]),
    ),
    "config_other_subsystem": (
        "CONFIG with another read-only subsystem ID (valid CRC)",
        lambda s: s.with_record(
            s.index(Tag.CONFIG),
            payload=s.payload(Tag.CONFIG)[: pci.SUBSYSTEM_ID]
            + b"\x09\x00"
            + s.payload(Tag.CONFIG)[pci.SUBSYSTEM_ID + 2 :],
        ),
    ),
    # Read-only state a device cannot hold: each must be refused, not written into the device.
    "config_header_type": (
        "CONFIG with a multi-function header type (valid CRC)",
        lambda s: s.with_bits(Tag.CONFIG, pci.HEADER_TYPE, 0x80),
    ),
    "config_bar_flag": (
        "CONFIG with BAR0's prefetchable flag set (valid CRC)",
        lambda s: s.with_bits(Tag.CONFIG, pci.BAR0, pci.BAR_PREFETCH),
    ),
    "config_msi_control": (
        "CONFIG with MSI's multiple-message-capable bits set (valid CRC)",
        lambda s: s.with_bits(Tag.CONFIG, r.PCI_MSI_CAP_OFFSET + 2, 0x0E),
    ),
    "config_status": (
        "CONFIG with the status register's 66 MHz bit set (valid CRC)",
        lambda s: s.with_bits(Tag.CONFIG, pci.STATUS, 0x20),
    ),
    "config_undefined_byte": (
        "CONFIG with a byte set past the capabilities (valid CRC)",
        lambda s: s.with_bits(Tag.CONFIG, 0xF0, 0x5A),
    ),
    "regs_undefined_byte": (
        "REGS with a byte set where there is no register (valid CRC)",
        lambda s: s.with_bits(Tag.REGS, 0x100, 0x5A),
    ),
    "regs_irq_unknown_source": (
        "REGS with an IRQ_STATUS bit of no interrupt source (valid CRC)",
        lambda s: s.with_bits(Tag.REGS, r.REG_IRQ_STATUS, 0x80),
    ),
    "regs_write_only_set": (
        "REGS with the write-only DMA_CMD register set (valid CRC)",
        lambda s: s.with_bits(Tag.REGS, r.REG_DMA_CMD, 0x01),
    ),
    "irqs_unknown_bit": (
        "IRQS with an undefined state bit (valid CRC)",
        lambda s: s.with_record(s.index(Tag.IRQS), payload=b"\x04" + bytes(IRQS_PAYLOAD - 1)),
    ),
}

# -- the checks: id -> what it asserts ---------------------------------------------------------

CHECKS: dict[str, str] = {
    "setup.create_devices": "create the devices the checks use (4 small, 2 large)",
    "setup.remove_devices": "remove them again at the end",
    "capability.flags": "VFIO_DEVICE_FEATURE_MIGRATION has STOP_COPY and P2P, no unknown bits",
    "capability.initial_state": "a freshly opened device is RUNNING",
    "stop_copy.prepare": "source and target hold different registers, config and BAR2",
    "stop_copy.save": "STOP -> STOP_COPY streams the state in odd-sized reads, then EOF",
    "stop_copy.stream_layout": "HEADER, every MEM chunk (holding BAR2), CONFIG, REGS, IRQS, END",
    "stop_copy.source_unchanged": "saving leaves the source's state alone, back in RUNNING",
    "stop_copy.resume": "the target takes the stream in odd-sized writes and returns to RUNNING",
    "stop_copy.registers": "target BAR0 0x000-0x0bf equals the source's",
    "stop_copy.session_counters": "target keeps its own PINNED_PAGES..RESET_COUNT",
    "stop_copy.config": "target config space equals the source's",
    "stop_copy.bar2_fd_half": "target BAR2 trapped half (through the fd) equals the source's",
    "stop_copy.bar2_mmap_half": "target BAR2 mmap-able half (through mmap) equals the source's",
    "stop_copy.large_type": "the same round trip of an 8 MiB large device (128 chunks)",
    "doorbells.running_control": "in RUNNING, DMA_CMD copies and IRQ_RAISE sets IRQ_STATUS",
    "doorbells.stop": "in STOP, DMA_CMD and IRQ_RAISE change nothing",
    "doorbells.stop_copy": "in STOP_COPY, DMA_CMD and IRQ_RAISE change nothing",
    "doorbells.running_p2p": "in RUNNING_P2P, DMA_CMD and IRQ_RAISE change nothing",
    "doorbells.p2p_arcs": "RUNNING -> RUNNING_P2P -> STOP -> RUNNING_P2P -> RUNNING",
    "type_mismatch.large_into_small": "a large device's stream is refused by a small one",
    "type_mismatch.small_into_large": "a small device's stream is refused by a large one",
    **{f"corrupt.{case}": f"refused: {what}" for case, (what, _make) in CORRUPTIONS.items()},
    "corrupt.control_reencoded": "control: the re-encoded stream is byte-identical and accepted",
    "data_fd.saving": "saving fd: no seek or pread, not writable, ENODEV once the session ends",
    "data_fd.resuming": "resuming fd: not readable, no pwrite, ENODEV once the session ends",
    "data_fd.close_in_resuming": "closing the device in RESUMING drops the staged state",
    "data_fd.reset_ends_saving": "VFIO_DEVICE_RESET in STOP_COPY: RUNNING, the fd gets ENODEV",
    "data_fd.reset_ends_resuming": "VFIO_DEVICE_RESET in RESUMING: RUNNING, the fd gets ENODEV",
    "data_fd.outlives_device": "a saving fd outlives close_device and removal (ENODEV)",
    "pre_copy.data_size": "VFIO_DEVICE_FEATURE_MIG_DATA_SIZE is the STOP_COPY stream's size",
    "pre_copy.initial_bytes": "entering PRE_COPY: initial_bytes = HEADER + every chunk, dirty 0",
    "pre_copy.partial_read": "reading 1000 bytes takes 1000 off initial_bytes",
    "pre_copy.initial_end": "after the initial data: both counts 0, read() fails with ENOMSG",
    "pre_copy.dirty_bytes": "DMA, fd and mmap writes in PRE_COPY make 3 chunks dirty_bytes",
    "pre_copy.dirty_end": "reading takes off dirty_bytes; at its end 0 and ENOMSG",
    "pre_copy.doorbells_p2p": "in PRE_COPY_P2P, DMA_CMD and IRQ_RAISE change nothing",
    "pre_copy.info_in_stop_copy": "VFIO_MIG_GET_PRECOPY_INFO fails with EINVAL in STOP_COPY",
    "pre_copy.stream_chunks": "the stream sends every chunk, then the dirty ones, then the rest",
    "pre_copy.round_trip": "the target resumes to the source's state at STOP_COPY",
    "pre_copy.running_ends_session": "PRE_COPY -> RUNNING ends the session (ENODEV, EINVAL)",
    "pre_copy.unread_then_stop_copy": "PRE_COPY -> STOP_COPY with nothing read: a whole stream",
    "pre_copy.stop_copy_to_pre_copy": "STOP_COPY -> PRE_COPY is refused with EINVAL",
}

OK, FAIL, NOT_APPLICABLE = "ok", "fail", "n/a"

# -- reporting ---------------------------------------------------------------------------------


class Checks:
    """Runs checks, printing one JSON line per check id as soon as its outcome is known."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}

    def report(self, check: str, status: str, detail: str = "") -> None:
        if check not in CHECKS:
            raise KeyError(f"{check} is not in CHECKS")
        if check in self.status:
            raise KeyError(f"{check} reported twice")
        self.status[check] = status
        print(json.dumps({"check": check, "status": status, "detail": detail}), flush=True)

    def fact(self, name: str, value: object) -> None:
        print(json.dumps({"fact": name, "value": value}), flush=True)

    def run(self, check: str, action: Callable[[], object]) -> bool:
        """Whether `action` passed. A str it returns is reported as the detail of the pass."""
        try:
            value = action()
        except Exception as exc:  # every failure is reported, none stops the others
            self.report(check, FAIL, describe(exc, __file__, HELPERS))
            return False
        self.report(check, OK, value if isinstance(value, str) else "")
        return True

    def sequence(self, steps: Sequence[tuple[str, Callable[[], object]]]) -> bool:
        """Steps that build on each other: after a failure the rest are reported not run."""
        for i, (check, step) in enumerate(steps):
            if not self.run(check, step):
                self.not_run([name for name, _ in steps[i + 1 :]], f"{check} failed")
                return False
        return True

    def not_run(self, checks: Iterable[str], because: str) -> None:
        for check in checks:
            self.report(check, FAIL, f"not run: {because}")

    def not_applicable(self, checks: Iterable[str], why: str) -> None:
        for check in checks:
            self.report(check, NOT_APPLICABLE, why)

    def pending(self, prefix: str = "") -> list[str]:
        return [name for name in CHECKS if name.startswith(prefix) and name not in self.status]


# This script's own assertion helpers: a failure names the line that called them.
HELPERS = frozenset({"same_state", "unchanged"})

# -- devices -----------------------------------------------------------------------------------

IOVA = 0x2000_0000
BUFFER_SIZE = 16 * PAGE_SIZE


class Open(Closing):
    """One open of an mdev through type1: the VFIO device, RefDevice and Migration views."""

    def __init__(self, mdev: MdevDevice) -> None:
        group = mdev.iommu_group
        if group is None:
            raise AssertionError(f"mdev {mdev.uuid} has no IOMMU group")
        self.opened = open_type1(group, mdev.uuid)
        self.dev = RefDevice(self.opened.device)
        self.mig = Migration(self.opened.device)

    def close(self) -> None:
        self.opened.close()

    def data_fd(self, state: MigState) -> MigrationDataFd:
        """Move to a saving or resuming state; its data fd."""
        fd = self.mig.set_state(state)
        if fd is None:
            raise AssertionError(f"entering {state.name} returned no data fd")
        return fd

    def mem_size(self) -> int:
        return self.dev.mem.info.size

    def mmap_half(self) -> int:
        """The size of BAR2's mmap-able part, which is its first half (kmod/README.md)."""
        areas = self.dev.mem.info.mmap_areas()
        half = self.mem_size() // 2
        equal([(x.offset, x.size) for x in areas], [(0, half)], "BAR2 sparse mmap areas")
        return half


@dataclass(frozen=True)
class Snapshot:
    """What migration must carry over (and what a refused stream must not touch)."""

    regs: bytes  # BAR0 0x000-0x0ff, through the fd
    config: bytes  # all of config space
    mem_mmap: bytes  # BAR2's mmap-able first half, through mmap
    mem_fd: bytes  # BAR2's trapped second half, through the fd

    @property
    def mem(self) -> bytes:
        return self.mem_mmap + self.mem_fd

    @property
    def device_regs(self) -> bytes:
        return self.regs[:SESSION_REGS]

    @property
    def session_regs(self) -> bytes:
        return self.regs[SESSION_REGS:SESSION_REGS_END]


def without_live_status(config: bytes) -> bytes:
    """Config space bytes with PCI_STATUS_INTERRUPT cleared: the device computes that bit."""
    data = bytearray(config)
    data[pci.STATUS] &= ~pci.STATUS_INTERRUPT & 0xFF
    return bytes(data)


def snapshot(o: Open) -> Snapshot:
    half = o.mmap_half()
    with o.dev.mem.mmap(0, half, writable=False) as mapped:
        mem_mmap = bytes(mapped)
    return Snapshot(
        regs=o.dev.bar0.read_exact(0, REGS_COMPARED),
        config=o.dev.config.read_exact(0, c.CONFIG_SIZE),
        mem_mmap=mem_mmap,
        mem_fd=o.dev.mem_read(half, o.mem_size() - half),
    )


def same_state(got: Snapshot, want: Snapshot, what: str) -> None:
    """Everything migration carries: device registers, config space, both halves of BAR2."""
    same_bytes(got.device_regs, want.device_regs, f"{what}: BAR0 0x000-0x0bf")
    same_bytes(got.config, want.config, f"{what}: config space")
    same_bytes(got.mem_fd, want.mem_fd, f"{what}: BAR2 trapped half (fd)")
    same_bytes(got.mem_mmap, want.mem_mmap, f"{what}: BAR2 mmap-able half (mmap)")


def unchanged(got: Snapshot, want: Snapshot, what: str) -> None:
    """Nothing at all changed, the session counters included."""
    same_state(got, want, what)
    same_bytes(got.session_regs, want.session_regs, f"{what}: BAR0 session counters")


def fill(o: Open, seed: int) -> None:
    """Registers, config space and both halves of BAR2 (through fd and mmap) made from `seed`."""
    g = random.Random(seed)
    dev, size = o.dev, o.mem_size()
    for i in range(r.NR_SCRATCH):
        dev.write32(r.REG_SCRATCH0 + 4 * i, g.getrandbits(32))
    dev.write32(r.REG_IRQ_MASK, r.IRQ_DMA_DONE | r.IRQ_SOFTWARE)
    dev.write64(r.REG_DMA_SRC, g.getrandbits(64))
    dev.write64(r.REG_DMA_DST, g.getrandbits(64))
    dev.write32(r.REG_DMA_LEN, 1 + g.getrandbits(16))
    dev.mem_write(0, g.randbytes(4096))  # mmap-able half, through the fd
    dev.mem_write(size // 2 + 123, g.randbytes(5000))  # trapped half
    dev.mem_write(size - 100, g.randbytes(100))  # the end of the last chunk
    with dev.mem.mmap(0, o.mmap_half()) as mapped:
        mapped[0x8000:0x9000] = g.randbytes(0x1000)
    config = dev.config
    config.write_int(pci.COMMAND, 2, config.read_int(pci.COMMAND, 2) | 0x6)  # memory, master
    config.write_int(pci.INTERRUPT_LINE, 1, g.randrange(1, 256))
    config.write_int(pci.BAR0, 4, 0xFE00_0000 + g.randrange(256) * c.BAR0_SIZE)
    config.write_int(pci.BAR2 + 4, 4, g.randrange(1, 256))  # upper half of the 64-bit BAR2
    msi = r.PCI_MSI_CAP_OFFSET
    config.write_int(msi + 4, 4, 0xFEE0_0000 + 0x10 * g.randrange(256))  # message address
    config.write_int(msi + 12, 2, g.getrandbits(16))  # message data


def save_stop_copy(o: Open, reads: Sequence[int] = (1, 23, 4097, 10)) -> bytes:
    """STOP -> STOP_COPY, the whole stream (first in reads of the given sizes), back to RUNNING."""
    o.mig.set_state(MigState.STOP)
    with o.data_fd(MigState.STOP_COPY) as fd:
        parts = [os.read(fd.fd, n) for n in reads]
        equal([len(part) for part in parts], list(reads), "bytes the first reads returned")
        stream = b"".join(parts) + fd.read_all()
        equal(os.read(fd.fd, 100), b"", "read after the end of the stream")
    o.mig.set_state(MigState.RUNNING)
    return stream


WRITE_SIZES = (1, 3, 7, 24, 25, 100, 4096, 65559, 300000)


def resume(o: Open, stream: bytes, *, pieces: bool = True) -> None:
    """STOP -> RESUMING, the stream (in odd-sized writes), RESUMING -> STOP -> RUNNING."""
    sizes = random.Random(len(stream))
    o.mig.set_state(MigState.STOP)
    with o.data_fd(MigState.RESUMING) as fd:
        pos = 0
        while pos < len(stream):
            n = sizes.choice(WRITE_SIZES) if pieces else len(stream)
            fd.write_all(stream[pos : pos + n])
            pos += n
        o.mig.set_state(MigState.STOP)
    o.mig.set_state(MigState.RUNNING)
    equal(o.mig.state(), MigState.RUNNING, "state after resuming")


def refused(mdev: MdevDevice, stream: bytes) -> str:
    """`stream` is refused with EINVAL, at a write or at RESUMING -> STOP, and the target keeps
    every bit of its state (it stays in RESUMING; closing the device ends the session)."""
    with Open(mdev) as o:
        # Values of the target's own that applying the stream would overwrite (an open starts
        # from power-on registers; BAR2 keeps what the target was filled with).
        o.dev.write32(r.REG_SCRATCH0, 0xB0B0B0B0)
        o.dev.config.write_int(pci.INTERRUPT_LINE, 1, 0x5A)
        before = snapshot(o)
        at = "RESUMING -> STOP"
        with o.data_fd(MigState.RESUMING) as fd:
            try:
                fd.write_all(stream)
            except OSError as exc:
                equal(errno_name(exc.errno or 0), "EINVAL", "errno of the refused write()")
                at = "write()"
                expect_errno(errno.EINVAL, lambda: fd.write_all(bytes(REC.size)), "next write()")
            expect_errno(errno.EINVAL, lambda: o.mig.set_state(MigState.STOP), "RESUMING -> STOP")
            equal(o.mig.state(), MigState.RESUMING, "state after the refused RESUMING -> STOP")
            unchanged(snapshot(o), before, "target after a refused stream")
        return f"refused at {at}"


def refused_corruption(mdev: MdevDevice, make: Callable[[Saved], bytes], saved: Saved) -> str:
    return refused(mdev, make(saved))


# -- doorbells ---------------------------------------------------------------------------------

BELL_DST = 9 * CHUNK + 0x40  # where in BAR2 the armed copy writes
BELL_LEN = 256


@dataclass(frozen=True)
class BellView:
    mem: bytes  # BAR2 at the copy's destination
    dma_status: int
    dma_done: int
    irq_status: int


class Doorbells:
    """A copy armed in the device (its source a buffer mapped at IOVA), and the two doorbells:
    DMA_CMD starts the copy, IRQ_RAISE sets IRQ_STATUS bits."""

    def __init__(self, o: Open, buffer: DmaBuffer) -> None:
        self.o = o
        self.buffer = buffer
        self.pattern = b""

    def view(self) -> BellView:
        dev = self.o.dev
        return BellView(
            mem=dev.mem_read(BELL_DST, BELL_LEN),
            dma_status=dev.read32(r.REG_DMA_STATUS),
            dma_done=dev.read32(r.REG_DMA_DONE_COUNT),
            irq_status=dev.read32(r.REG_IRQ_STATUS),
        )

    def arm(self) -> BellView:
        """(Device running.) A fresh pattern to copy, the copy programmed, IRQ_STATUS clear."""
        dev = self.o.dev
        self.pattern = os.urandom(BELL_LEN)
        self.buffer.write(0, self.pattern)
        dev.write64(r.REG_DMA_SRC, IOVA)
        dev.write64(r.REG_DMA_DST, BELL_DST)
        dev.write32(r.REG_DMA_LEN, BELL_LEN)
        dev.write32(r.REG_IRQ_STATUS, r.IRQ_ALL)
        before = self.view()
        differ(before.mem, self.pattern, "BAR2 at the destination and the pattern to copy")
        equal(before.irq_status, 0, "IRQ_STATUS after clearing it")
        return before

    def ring(self) -> None:
        self.o.dev.write32(r.REG_DMA_CMD, dma_command(Direction.TO_DEVICE, Method.PIN))
        self.o.dev.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)

    def expect_refused(self, before: BellView, state: str) -> None:
        after = self.view()
        equal(after.dma_done, before.dma_done, f"DMA_DONE_COUNT after DMA_CMD in {state}")
        equal(after.dma_status, before.dma_status, f"DMA_STATUS after DMA_CMD in {state}")
        same_bytes(after.mem, before.mem, f"BAR2 at the copy's destination after {state}")
        equal(after.irq_status, before.irq_status, f"IRQ_STATUS after IRQ_RAISE in {state}")

    def expect_worked(self, before: BellView) -> None:
        after = self.view()
        equal(after.dma_done, before.dma_done + 1, "DMA_DONE_COUNT after DMA_CMD in RUNNING")
        equal(after.dma_status, r.DMA_STATUS_DONE, "DMA_STATUS after DMA_CMD in RUNNING")
        same_bytes(after.mem, self.pattern, "BAR2 at the copy's destination in RUNNING")
        equal(after.irq_status, r.IRQ_DMA_DONE | r.IRQ_SOFTWARE, "IRQ_STATUS in RUNNING")


def doorbells_work(o: Open, bells: Doorbells) -> None:
    equal(o.mig.state(), MigState.RUNNING, "state")
    before = bells.arm()
    bells.ring()
    bells.expect_worked(before)


def doorbells_refused_in(o: Open, bells: Doorbells, state: MigState) -> None:
    """Armed in RUNNING, rung in `state` (reached the way the core steps there): no effect."""
    before = bells.arm()
    with contextlib.ExitStack() as stack:
        fd = o.mig.set_state(state)
        if fd is not None:
            stack.enter_context(fd)
        equal(o.mig.state(), state, "state")
        bells.ring()
        bells.expect_refused(before, state.name)
        o.mig.set_state(MigState.RUNNING)


def p2p_arcs(o: Open) -> None:
    for state in (MigState.RUNNING_P2P, MigState.STOP, MigState.RUNNING_P2P, MigState.RUNNING):
        o.mig.set_state(state)
        equal(o.mig.state(), state, f"state after the arc to {state.name}")


# -- the groups of checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class Devices:
    small_type: MdevType
    a: MdevDevice  # STOP_COPY and PRE_COPY source
    b: MdevDevice  # their target
    c: MdevDevice  # doorbells, data fd behaviour
    t: MdevDevice  # target of the refused streams
    la: MdevDevice  # large source
    lb: MdevDevice  # large target


@dataclass
class Streams:
    """What the STOP_COPY round trips saved, for the refused-stream checks."""

    small: Saved | None = None  # from a
    small_state: Snapshot | None = None  # a's state, which it carries
    large: bytes | None = None  # from la


def validate_flags(flags: int) -> str:
    need = v.VFIO_MIGRATION_STOP_COPY | v.VFIO_MIGRATION_P2P
    known = need | v.VFIO_MIGRATION_PRE_COPY
    equal(flags & need, need, "migration flags STOP_COPY | P2P")
    equal(flags & ~known, 0, "unknown migration flags")
    return f"flags {flags:#x}"


def check_capability(checks: Checks, devices: Devices) -> int | None:
    """The device's migration flags, None when they could not be read."""
    with Open(devices.a) as o:
        try:
            flags: int | None = o.mig.flags()
        except OSError as exc:
            flags = None
            checks.report("capability.flags", FAIL, describe(exc, __file__, HELPERS))
        else:
            checks.fact("migration_flags", flags)
            checks.run("capability.flags", lambda: validate_flags(flags or 0))
        checks.run(
            "capability.initial_state", lambda: equal(o.mig.state(), MigState.RUNNING, "state")
        )
    return flags


def tag_name(tag: int) -> str:
    return Tag(tag).name if tag in set(Tag) else str(tag)


def check_layout(saved: Saved, ref_type: c.RefType, want: Snapshot) -> None:
    """The records of a STOP_COPY stream, and that they carry `want`."""
    records, size = saved.records, ref_type.mem_size
    chunks = size // CHUNK
    equal(
        [tag_name(rec.tag) for rec in records],
        ["HEADER"] + ["MEM"] * chunks + ["CONFIG", "REGS", "IRQS", "END"],
        "record tags",
    )
    equal([rec.seq for rec in records], list(range(len(records))), "record seq")
    equal([rec.flags for rec in records], [0] * len(records), "record flags")
    expected = Header(
        MAGIC, STREAM_VERSION, ref_type.index, CHUNK, size, c.CONFIG_SIZE, c.BAR0_SIZE,
        v.VFIO_PCI_NUM_IRQS, 0,
    )  # fmt: skip
    equal(Header(*HEADER.unpack(records[0].payload)), expected, "HEADER")
    mem = records[1 : 1 + chunks]
    equal([rec.offset for rec in mem], list(range(0, size, CHUNK)), "MEM offsets")
    same_bytes(b"".join(rec.payload for rec in mem), want.mem, "MEM payloads against BAR2")
    config, regs, irqs, end = records[-4:]
    equal(len(config.payload), CONFIG_PAYLOAD, "CONFIG payload size")
    # PCI_STATUS_INTERRUPT is not stored: config reads derive it from the registers.
    same_bytes(
        without_live_status(config.payload[: c.CONFIG_SIZE]),
        without_live_status(want.config),
        "CONFIG against config space",
    )
    equal(len(regs.payload), c.BAR0_SIZE, "REGS payload size")
    same_bytes(regs.payload[:SESSION_REGS], want.device_regs, "REGS against BAR0")
    equal(len(irqs.payload), IRQS_PAYLOAD, "IRQS payload size")
    before_end = (len(saved.data) - record_size(END.size), len(records) - 1, 0)
    equal(END.unpack(end.payload), before_end, "END (bytes and records before it)")
    equal(len(saved.data), stop_copy_size(size), "stream size")


class RoundTrip:
    """STOP_COPY from a to b, each step a check."""

    def __init__(self, a: Open, b: Open, buffer: DmaBuffer, streams: Streams) -> None:
        self.a, self.b, self.buffer, self.streams = a, b, buffer, streams
        self.saved: Saved | None = None
        self.source: Snapshot | None = None  # a, as saved
        self.target: Snapshot | None = None  # b, before
        self.result: Snapshot | None = None  # b, after

    def prepare(self) -> None:
        a, b = self.a, self.b
        b.opened.device.reset()  # RESET_COUNT is 1 on the target, 0 on the source
        a.opened.dma.map_buffer(IOVA, self.buffer)
        self.buffer.write(0, os.urandom(BUFFER_SIZE))
        # A copy into BAR2 moves DMA_DONE_COUNT (migrated) and TOTAL_PINS (not) on the source.
        a.dev.dma(IOVA, 2 * CHUNK, BUFFER_SIZE, Direction.TO_DEVICE).check("DMA on the source")
        fill(a, 1)
        fill(b, 2)
        want, had = self.source, self.target = snapshot(a), snapshot(b)
        differ(had.device_regs, want.device_regs, "target and source registers")
        differ(had.session_regs, want.session_regs, "target and source session counters")
        differ(had.config, want.config, "target and source config spaces")
        differ(had.mem_fd, want.mem_fd, "target and source BAR2 trapped halves")
        differ(had.mem_mmap, want.mem_mmap, "target and source BAR2 mmap-able halves")

    def save(self) -> None:
        self.saved = Saved.of(save_stop_copy(self.a))

    def layout(self) -> None:
        assert self.saved is not None and self.source is not None
        check_layout(self.saved, c.SMALL, self.source)

    def source_unchanged(self) -> None:
        assert self.saved is not None and self.source is not None
        equal(self.a.mig.state(), MigState.RUNNING, "source state")
        unchanged(snapshot(self.a), self.source, "source after saving")
        self.streams.small, self.streams.small_state = self.saved, self.source

    def resume(self) -> None:
        assert self.saved is not None
        resume(self.b, self.saved.data)
        self.result = snapshot(self.b)

    def compare(self, checks: Checks) -> None:
        got, want, had = self.result, self.source, self.target
        assert got is not None and want is not None and had is not None
        pairs = {
            "stop_copy.registers": (got.device_regs, want.device_regs, "BAR0 0x000-0x0bf"),
            "stop_copy.session_counters": (got.session_regs, had.session_regs, "BAR0 0x0c0-"),
            "stop_copy.config": (got.config, want.config, "config space"),
            "stop_copy.bar2_fd_half": (got.mem_fd, want.mem_fd, "BAR2 trapped half (fd)"),
            "stop_copy.bar2_mmap_half": (got.mem_mmap, want.mem_mmap, "BAR2 mmap-able half"),
        }
        for check, (x, y, what) in pairs.items():
            checks.run(check, partial(same_bytes, x, y, what))


def large_round_trip(devices: Devices, streams: Streams) -> None:
    with Open(devices.la) as x, Open(devices.lb) as y:
        fill(x, 3)
        fill(y, 4)
        x.dev.mem_write(x.mem_size() - CHUNK - 5, b"across-a-chunk-boundary")
        want = snapshot(x)
        differ(snapshot(y).mem, want.mem, "large target and source BAR2")
        saved = Saved.of(save_stop_copy(x))
        check_layout(saved, c.LARGE, want)
        resume(y, saved.data)
        same_state(snapshot(y), want, "large target")
        streams.large = saved.data


def check_stop_copy(checks: Checks, devices: Devices) -> Streams:
    streams = Streams()
    with Open(devices.a) as a, Open(devices.b) as b, DmaBuffer(BUFFER_SIZE) as buffer:
        trip = RoundTrip(a, b, buffer, streams)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("stop_copy.prepare", trip.prepare),
            ("stop_copy.save", trip.save),
            ("stop_copy.stream_layout", trip.layout),
            ("stop_copy.source_unchanged", trip.source_unchanged),
            ("stop_copy.resume", trip.resume),
        ]
        if checks.sequence(steps):
            trip.compare(checks)
        else:
            compared = [x for x in checks.pending("stop_copy.") if x != "stop_copy.large_type"]
            checks.not_run(compared, "the round trip failed before it")
    checks.run("stop_copy.large_type", lambda: large_round_trip(devices, streams))
    return streams


def check_doorbells(checks: Checks, devices: Devices) -> None:
    with Open(devices.c) as o, DmaBuffer(BUFFER_SIZE) as buffer:
        o.opened.dma.map_buffer(IOVA, buffer)
        bells = Doorbells(o, buffer)
        checks.run("doorbells.running_control", lambda: doorbells_work(o, bells))
        for state in (MigState.STOP, MigState.STOP_COPY, MigState.RUNNING_P2P):
            checks.run(
                f"doorbells.{state.name.lower()}", partial(doorbells_refused_in, o, bells, state)
            )
        checks.run("doorbells.p2p_arcs", lambda: p2p_arcs(o))


def check_refused_streams(checks: Checks, devices: Devices, streams: Streams) -> None:
    small, small_state, large = streams.small, streams.small_state, streams.large
    if small is None or small_state is None:
        checks.not_run(
            [*checks.pending("corrupt."), "type_mismatch.small_into_large"],
            "no small STOP_COPY stream (see stop_copy.*)",
        )
    else:
        with Open(devices.t) as t:
            fill(t, 9)  # the target's own BAR2; refused() sets registers and config
        for case, (_what, make) in CORRUPTIONS.items():
            checks.run(f"corrupt.{case}", partial(refused_corruption, devices.t, make, small))
        checks.run("type_mismatch.small_into_large", lambda: refused(devices.lb, small.data))

        def control() -> None:
            """Last: the target takes the re-encoded stream, so it is no longer distinct."""
            same_bytes(encode(small.records), small.data, "the re-encoded stream")
            with Open(devices.t) as t:
                differ(snapshot(t).mem, small_state.mem, "target and stream BAR2")
                resume(t, encode(small.records), pieces=False)
                same_state(snapshot(t), small_state, "target after the re-encoded stream")

        checks.run("corrupt.control_reencoded", control)
    if large is None:
        checks.not_run(["type_mismatch.large_into_small"], "no large stream (stop_copy.large_type)")
    else:
        checks.run("type_mismatch.large_into_small", lambda: refused(devices.t, large))


class DataFd:
    """What the saving and resuming fds allow, and what ends their sessions."""

    def __init__(self, devices: Devices) -> None:
        self.devices = devices

    def saving(self) -> None:
        with Open(self.devices.c) as o:
            o.mig.set_state(MigState.STOP)
            with o.data_fd(MigState.STOP_COPY) as fd:
                expect_errno(errno.ESPIPE, lambda: os.lseek(fd.fd, 0, os.SEEK_SET), "lseek")
                expect_errno(errno.ESPIPE, lambda: os.pread(fd.fd, 10, 0), "pread")
                expect_errno(errno.EBADF, lambda: os.write(fd.fd, b"x"), "write")
                equal(len(os.read(fd.fd, 10)), 10, "bytes of the first read")
                o.mig.set_state(MigState.STOP)
                expect_errno(errno.ENODEV, lambda: os.read(fd.fd, 10), "read after -> STOP")
            o.mig.set_state(MigState.RUNNING)

    def resuming(self) -> None:
        with Open(self.devices.c) as o:
            stream = save_stop_copy(o)
            o.mig.set_state(MigState.STOP)
            with o.data_fd(MigState.RESUMING) as fd:
                expect_errno(errno.EBADF, lambda: os.read(fd.fd, 10), "read")
                expect_errno(errno.ESPIPE, lambda: os.pwrite(fd.fd, b"x", 0), "pwrite")
                fd.write_all(stream)
                o.mig.set_state(MigState.STOP)
                expect_errno(errno.ENODEV, lambda: os.write(fd.fd, b"x"), "write after -> STOP")
            o.mig.set_state(MigState.RUNNING)

    def close_in_resuming(self) -> None:
        fd: MigrationDataFd | None = None
        try:
            with Open(self.devices.c) as o:
                stream = save_stop_copy(o)
                o.dev.mem_write(0, b"written after saving")
                before = snapshot(o).mem
                o.mig.set_state(MigState.STOP)
                fd = o.data_fd(MigState.RESUMING)
                fd.write_all(stream[: len(stream) // 2])
            # the device is closed with the resuming fd still open
        finally:
            if fd is not None:
                fd.close()
        with Open(self.devices.c) as o:
            equal(o.mig.state(), MigState.RUNNING, "state of the next open")
            same_bytes(snapshot(o).mem, before, "BAR2 after the session was dropped")

    def reset_ends(self, state: MigState) -> None:
        with Open(self.devices.c) as o:
            stream = save_stop_copy(o)
            o.mig.set_state(MigState.STOP)
            with o.data_fd(state) as fd:
                if state == MigState.RESUMING:
                    fd.write_all(stream[:1000])
                else:
                    os.read(fd.fd, 1000)
                o.opened.device.reset()
                equal(o.mig.state(), MigState.RUNNING, "state after VFIO_DEVICE_RESET")
                if state == MigState.RESUMING:
                    expect_errno(errno.ENODEV, lambda: os.write(fd.fd, stream[1000:]), "write")
                else:
                    expect_errno(errno.ENODEV, lambda: os.read(fd.fd, 100), "read")

    def outlives_device(self) -> None:
        extra = self.devices.small_type.create()
        try:
            with contextlib.ExitStack() as stack:
                o = stack.enter_context(Open(extra))
                o.mig.set_state(MigState.STOP)
                fd = o.data_fd(MigState.STOP_COPY)
                stack.callback(fd.close)  # closed last, after the device
                os.read(fd.fd, 100)
                o.close()  # close_device with the saving fd still open
                expect_errno(errno.ENODEV, lambda: os.read(fd.fd, 100), "read after close")
                extra.remove()  # the fd holds the vfio_device, not the mdev
                expect_errno(errno.ENODEV, lambda: os.read(fd.fd, 100), "read after remove")
        finally:
            extra.remove(missing_ok=True)


def check_data_fd(checks: Checks, devices: Devices) -> None:
    fds = DataFd(devices)
    checks.run("data_fd.saving", fds.saving)
    checks.run("data_fd.resuming", fds.resuming)
    checks.run("data_fd.close_in_resuming", fds.close_in_resuming)
    checks.run("data_fd.reset_ends_saving", lambda: fds.reset_ends(MigState.STOP_COPY))
    checks.run("data_fd.reset_ends_resuming", lambda: fds.reset_ends(MigState.RESUMING))
    checks.run("data_fd.outlives_device", fds.outlives_device)


class PreCopy:
    """A PRE_COPY session of a: initial data, dirty data, STOP_COPY, then b resumes it all."""

    LATE_SCRATCH = 0xC0FFEE

    def __init__(self, a: Open, b: Open, buffer: DmaBuffer) -> None:
        self.a, self.b, self.buffer = a, b, buffer
        self.size = a.mem_size()
        self.initial = initial_size(self.size)
        self.dirty = 3 * record_size(CHUNK)  # chunks 1, 3 and 5 change
        self.stack = contextlib.ExitStack()
        self.fd: MigrationDataFd | None = None
        self.parts: list[bytes] = []
        self.want: Snapshot | None = None  # a at STOP_COPY

    def close(self) -> None:
        self.stack.close()
        with contextlib.suppress(OSError):
            self.a.mig.set_state(MigState.RUNNING)

    def session(self) -> MigrationDataFd:
        if self.fd is None:
            raise AssertionError("no PRE_COPY session")
        return self.fd

    def read(self, size: int) -> bytes:
        part = os.read(self.session().fd, size)
        self.parts.append(part)
        return part

    def info(self, want: tuple[int, int], when: str) -> None:
        got = self.session().precopy_info()
        equal((got.initial_bytes, got.dirty_bytes), want, f"(initial_bytes, dirty_bytes) {when}")

    def initial_bytes(self) -> None:
        fill(self.a, 5)
        self.a.opened.dma.map_buffer(IOVA, self.buffer)
        self.buffer.write(0, os.urandom(BUFFER_SIZE))
        self.fd = self.stack.enter_context(self.a.data_fd(MigState.PRE_COPY))
        equal(self.a.mig.state(), MigState.PRE_COPY, "state")
        self.info((self.initial, 0), "on entering PRE_COPY")

    def partial_read(self) -> None:
        equal(len(self.read(1000)), 1000, "bytes read")
        self.info((self.initial - 1000, 0), "after reading 1000 bytes")

    def initial_end(self) -> None:
        rest = self.initial - 1000
        while rest > 0:
            part = self.read(rest)
            if not part:
                raise AssertionError(f"EOF with {rest} bytes of initial data to come")
            rest -= len(part)
        self.info((0, 0), "after the initial data")
        expect_errno(errno.ENOMSG, lambda: os.read(self.session().fd, 100), "read at its end")

    def dirty_bytes(self) -> None:
        # The device runs in PRE_COPY: a DMA into chunk 5, an fd write into chunk 3 and an mmap
        # write into chunk 1.
        a = self.a
        a.dev.dma(IOVA, 5 * CHUNK + 10, 8192, Direction.TO_DEVICE).check("DMA in PRE_COPY")
        a.dev.mem_write(3 * CHUNK + 7, b"dirty-by-write")
        with a.dev.mem.mmap(0, a.mmap_half()) as mapped:
            mapped[CHUNK + 100 : CHUNK + 110] = b"dirty-mmap"
        self.info((0, self.dirty), "after changing chunks 1, 3 and 5")

    def dirty_end(self) -> None:
        self.read(10)
        self.info((0, self.dirty - 10), "after reading 10 bytes of dirty data")
        while True:
            try:
                part = os.read(self.session().fd, 1 << 20)
            except OSError as exc:
                equal(errno_name(exc.errno or 0), "ENOMSG", "read at the end of dirty data")
                break
            if not part:
                raise AssertionError("EOF in PRE_COPY")
            self.parts.append(part)
        self.info((0, 0), "after the dirty data")

    def doorbells_p2p(self) -> None:
        a = self.a
        # Last changes while running (they go out in STOP_COPY), then P2P quiescence.
        a.dev.mem_write(7 * CHUNK, b"late-change")
        a.dev.write32(r.REG_SCRATCH0 + 4, self.LATE_SCRATCH)
        bells = Doorbells(a, self.buffer)
        before = bells.arm()
        a.mig.set_state(MigState.PRE_COPY_P2P)
        equal(a.mig.state(), MigState.PRE_COPY_P2P, "state")
        bells.ring()
        bells.expect_refused(before, "PRE_COPY_P2P")

    def info_in_stop_copy(self) -> None:
        self.a.mig.set_state(MigState.STOP_COPY)
        self.want = snapshot(self.a)
        expect_errno(errno.EINVAL, self.session().precopy_info, "VFIO_MIG_GET_PRECOPY_INFO")

    def stream_chunks(self) -> None:
        self.parts.append(self.session().read_all())
        equal(os.read(self.session().fd, 10), b"", "read after the end")
        self.close()
        records = parse_stream(b"".join(self.parts))
        mems = [rec.offset // CHUNK for rec in records if rec.tag == Tag.MEM]
        equal(mems, [*range(self.size // CHUNK), 1, 3, 5, 7], "chunks sent, in order")
        others = [tag_name(rec.tag) for rec in records if rec.tag != Tag.MEM]
        equal(others, ["HEADER", "CONFIG", "REGS", "IRQS", "END"], "the other records")

    def round_trip(self) -> None:
        assert self.want is not None
        differ(snapshot(self.b).mem, self.want.mem, "target and source BAR2")
        resume(self.b, b"".join(self.parts))
        same_state(snapshot(self.b), self.want, "target after the pre-copy")
        equal(self.b.dev.read32(r.REG_SCRATCH0 + 4), self.LATE_SCRATCH, "SCRATCH1, written last")

    def steps(self) -> list[tuple[str, Callable[[], object]]]:
        return [
            ("pre_copy.initial_bytes", self.initial_bytes),
            ("pre_copy.partial_read", self.partial_read),
            ("pre_copy.initial_end", self.initial_end),
            ("pre_copy.dirty_bytes", self.dirty_bytes),
            ("pre_copy.dirty_end", self.dirty_end),
            ("pre_copy.doorbells_p2p", self.doorbells_p2p),
            ("pre_copy.info_in_stop_copy", self.info_in_stop_copy),
            ("pre_copy.stream_chunks", self.stream_chunks),
            ("pre_copy.round_trip", self.round_trip),
        ]

    # Independent of the session above:

    def running_ends_session(self) -> None:
        a = self.a
        with a.data_fd(MigState.PRE_COPY) as fd:
            a.mig.set_state(MigState.RUNNING)
            expect_errno(errno.ENODEV, lambda: os.read(fd.fd, 10), "read after -> RUNNING")
            expect_errno(errno.EINVAL, fd.precopy_info, "VFIO_MIG_GET_PRECOPY_INFO")

    def unread_then_stop_copy(self) -> None:
        a = self.a
        a.dev.mem_write(11 * CHUNK, os.urandom(64))
        with a.data_fd(MigState.PRE_COPY) as fd:
            a.mig.set_state(MigState.STOP_COPY)
            want = snapshot(a)
            stream = fd.read_all()
        a.mig.set_state(MigState.RUNNING)
        equal(len(stream), stop_copy_size(self.size), "stream size")
        differ(snapshot(self.b).mem, want.mem, "target and source BAR2")
        resume(self.b, stream, pieces=False)
        same_state(snapshot(self.b), want, "target")

    def stop_copy_to_pre_copy(self) -> None:
        a = self.a
        a.mig.set_state(MigState.STOP)
        with a.data_fd(MigState.STOP_COPY):
            expect_errno(errno.EINVAL, lambda: a.mig.set_state(MigState.PRE_COPY), "-> PRE_COPY")
            equal(a.mig.state(), MigState.STOP_COPY, "state after the refused arc")
        a.mig.set_state(MigState.RUNNING)


def check_pre_copy(checks: Checks, devices: Devices) -> None:
    with Open(devices.a) as a, Open(devices.b) as b, DmaBuffer(BUFFER_SIZE) as buffer:
        size = a.mem_size()
        checks.run(
            "pre_copy.data_size",
            lambda: equal(a.mig.data_size(), stop_copy_size(size), "stop_copy_length"),
        )
        flow = PreCopy(a, b, buffer)
        try:
            checks.sequence(flow.steps())
        finally:
            flow.close()
        checks.run("pre_copy.running_ends_session", flow.running_ends_session)
        checks.run("pre_copy.unread_then_stop_copy", flow.unread_then_stop_copy)
        checks.run("pre_copy.stop_copy_to_pre_copy", flow.stop_copy_to_pre_copy)


def run_groups(checks: Checks, devices: Devices) -> None:
    flags = check_capability(checks, devices)
    streams = check_stop_copy(checks, devices)
    check_doorbells(checks, devices)
    check_refused_streams(checks, devices, streams)
    check_data_fd(checks, devices)
    pre_copy = checks.pending("pre_copy.")
    if flags is None:
        checks.not_run(pre_copy, "the migration flags could not be read")
    elif not flags & v.VFIO_MIGRATION_PRE_COPY:
        checks.not_applicable(
            pre_copy,
            f"the device's migration flags {flags:#x} lack VFIO_MIGRATION_PRE_COPY "
            "(the kernel has no PRE_COPY)",
        )
    else:
        check_pre_copy(checks, devices)


def main() -> None:
    checks = Checks()
    sysfs = MdevSysfs()
    created: list[MdevDevice] = []
    made: list[Devices] = []

    def create() -> None:
        small = sysfs.find_type(c.SMALL.type_id, c.PARENT_NAME)
        large = sysfs.find_type(c.LARGE.type_id, c.PARENT_NAME)
        for mtype in (small, small, small, small, large, large):
            created.append(mtype.create())
        made.append(Devices(small, *created))

    def remove() -> None:
        for device in created:
            device.remove(missing_ok=True)

    broke = False
    try:
        if checks.run("setup.create_devices", create):
            run_groups(checks, made[0])
    except Exception as exc:  # a bug in this script: charge it to what did not run
        broke = True
        print(traceback.format_exc(), file=sys.stderr)
        because = f"the guest script broke: {describe(exc, __file__, HELPERS)}"
        checks.not_run([x for x in checks.pending() if x != "setup.remove_devices"], because)
    finally:
        checks.run("setup.remove_devices", remove)
    checks.not_run(checks.pending(), "setup.create_devices failed")
    # Failed checks are results, not errors: the exit status says whether the script itself
    # ran to its end.
    sys.exit(2 if broke else 0)


if __name__ == "__main__":
    main()
