# SPDX-License-Identifier: MIT
"""The fuzzer's programs: sequences of UAPI operations, generated and mutated from a model of
what the device under test offers (its profile, read once in the guest).

    profile = Profile.from_json(guest_says)
    gen = Generator(profile, random.Random(seed))
    program = gen.program()                         # [{"op": "open", "mode": "type1"}, ...]
    child = gen.mutate(program, corpus_pick)

An operation is a JSON object: "op" names it (OPS), the other keys are its arguments, always
concrete values, so a program replays the same anywhere and reads as a test. Values lean on
the edges where drivers go wrong: the last bytes of a region, one past its end, unaligned
and huge offsets, zero and overflowing lengths, IOVAs at the top of the address space. Pure
and standard library only: the host generates, the guest (harness.fuzz.executor) runs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Op = dict[str, Any]
Program = list[Op]

PAGE = 4096
MAX_OPS = 24
IOMMU_MODES = ("type1", "iommufd")
# vfio.h's SET_IRQS flags: data types (bits 0-2) and actions (bits 3-5).
IRQ_DATA = {"none": 1, "bool": 2, "eventfd": 4}
IRQ_ACTION = {"mask": 8, "unmask": 16, "trigger": 32}
# The migration states of vfio.h (0..7) and two that are not.
MIG_STATES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0xFFFF)
DMA_SLOTS = 4  # buffers a program may hold mapped at once
MMAP_SLOTS = 4
WIDTHS = (1, 2, 4, 8)
MAX_VECTORS = 64  # SET_IRQS payload entries a program sends at most
# Operations a device needs to be open for; "open", "create" and "remove" act on sysfs.
OPS = (
    "open", "close", "device_info", "region_info", "irq_info", "region_read", "region_write",
    "mmap", "touch", "munmap", "set_irqs", "map", "unmap", "unmap_all", "dma", "reset",
    "mig_set", "mig_read", "mig_write", "precopy_info", "data_size", "create", "remove",
)  # fmt: skip


@dataclass(frozen=True)
class Region:
    index: int
    size: int
    flags: int
    mmap_areas: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Profile:
    """What the fuzzer knows of the device: read in the guest (executor.read_profile)."""

    regions: tuple[Region, ...]
    num_regions: int
    irqs: tuple[tuple[int, int], ...]  # (index, count) of each index with vectors
    num_irqs: int
    migration: int  # VFIO_MIGRATION_* flags; 0 when it cannot migrate
    modes: tuple[str, ...]  # the IOMMU modes this kernel offers
    refdev: bool  # our reference device: its DMA engine is driven by name
    mem_size: int = 0  # refdev: BAR2's size

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        regions = tuple(
            Region(r["index"], r["size"], r["flags"], tuple(map(tuple, r.get("mmap_areas", []))))
            for r in data["regions"]
        )
        return cls(
            regions,
            data["num_regions"],
            tuple((i, c) for i, c in data["irqs"]),
            data["num_irqs"],
            data["migration"],
            tuple(data["modes"]),
            data["refdev"],
            data.get("mem_size", 0),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "regions": [
                {"index": r.index, "size": r.size, "flags": r.flags, "mmap_areas": r.mmap_areas}
                for r in self.regions
            ],
            "num_regions": self.num_regions,
            "irqs": self.irqs,
            "num_irqs": self.num_irqs,
            "migration": self.migration,
            "modes": self.modes,
            "refdev": self.refdev,
            "mem_size": self.mem_size,
        }


@dataclass
class Held:
    """What a program holds at a point, as far as its ops say (the executor's view)."""

    mapped: dict[int, int] = field(default_factory=dict)  # DMA slot -> pages
    mmapped: set[int] = field(default_factory=set)

    @classmethod
    def after(cls, ops: Sequence[Op]) -> Held:
        held = cls()
        for op in ops:
            name = op["op"]
            if name in ("open", "close", "remove"):
                held = cls()
            elif name == "map":
                held.mapped[op["slot"]] = op["pages"]
            elif name == "unmap" and op["whole"]:
                held.mapped.pop(op["slot"], None)
            elif name == "unmap_all":
                held.mapped.clear()
            elif name == "mmap":
                held.mmapped.add(op["slot"])
            elif name == "munmap":
                held.mmapped.discard(op["slot"])
        return held


@dataclass
class Generator:
    """Programs for one device. An op's arguments lean on what the ops before it hold (a DMA
    names a mapped buffer, an unmap a mapped slot), so deep paths are reached often, while a
    share of them still names what is not there."""

    profile: Profile
    rng: random.Random = field(default_factory=random.Random)
    held: Held = field(default_factory=Held)

    # -- programs -------------------------------------------------------------------------------

    def program(self, length: int | None = None) -> Program:
        """A new program; nearly always opening the device first, since most ops need it."""
        count = length if length is not None else self.rng.randint(2, MAX_OPS // 2)
        ops: Program = [self.op("open")] if self.rng.random() < 0.95 else []
        for _ in range(count):
            ops.append(self.op(before=ops))
        return ops[:MAX_OPS]

    def mutate(self, program: Program, other: Callable[[], Program] | None = None) -> Program:
        """A child of `program`: ops inserted, dropped, changed, repeated, or spliced with
        `other()`'s (another corpus program)."""
        child = [dict(op) for op in program]
        for _ in range(self.rng.randint(1, 3)):
            choice = self.rng.random()
            at = self.rng.randrange(len(child) + 1)
            if choice < 0.35 or not child:
                child.insert(at, self.op(before=child[:at]))
            elif choice < 0.5:
                del child[min(at, len(child) - 1)]
            elif choice < 0.75:
                where = min(at, len(child) - 1)
                child[where] = self.op(child[where]["op"], child[:where])  # new arguments
            elif choice < 0.85:
                where = min(at, len(child) - 1)
                child.insert(where, dict(child[where]))
            elif other is not None:
                donor = other()
                if donor:
                    start = self.rng.randrange(len(donor))
                    child[at:at] = [dict(op) for op in donor[start : start + 4]]
        return child[:MAX_OPS] or self.program()

    # -- operations -----------------------------------------------------------------------------

    def op(self, name: str | None = None, before: Sequence[Op] = ()) -> Op:
        self.held = Held.after(before)
        name = name or self._pick_name()
        build = getattr(self, f"_op_{name}", None)
        extra: dict[str, Any] = build() if build is not None else {}
        return {"op": name, **extra}

    def _pick_name(self) -> str:
        names = [n for n in OPS if self._offered(n)]
        weights = [_WEIGHTS.get(n, 1) for n in names]
        return self.rng.choices(names, weights)[0]

    def _offered(self, name: str) -> bool:
        p = self.profile
        if name == "dma":
            return p.refdev
        if name in ("mig_set", "mig_read", "mig_write", "precopy_info", "data_size"):
            return bool(p.migration)
        if name in ("mmap", "touch", "munmap"):
            return any(r.mmap_areas for r in p.regions)
        if name == "set_irqs":
            return bool(p.num_irqs)
        if name in ("region_read", "region_write"):
            return bool(p.regions)
        return True

    def _op_open(self) -> dict[str, Any]:
        return {"mode": self.rng.choice(self.profile.modes or IOMMU_MODES)}

    def _op_region_info(self) -> dict[str, Any]:
        return {"index": self._index(self.profile.num_regions)}

    def _op_irq_info(self) -> dict[str, Any]:
        return {"index": self._index(self.profile.num_irqs)}

    def _op_region_read(self) -> dict[str, Any]:
        region = self._region()
        width = self._width(region)
        return {"index": region.index, "offset": self._offset(region.size, width), "width": width}

    def _op_region_write(self) -> dict[str, Any]:
        args = self._op_region_read()
        args["value"] = self._value(args["width"])
        return args

    def _op_mmap(self) -> dict[str, Any]:
        regions = [r for r in self.profile.regions if r.mmap_areas] or list(self.profile.regions)
        region = self.rng.choice(regions)
        if region.mmap_areas and self.rng.random() < 0.8:
            start, size = self.rng.choice(region.mmap_areas)
            pages = max(size // PAGE, 1)
            offset = start + PAGE * self.rng.randrange(pages)
            length = PAGE * self.rng.randint(1, max(pages - (offset - start) // PAGE, 1))
        else:  # outside what the driver offers, or unaligned
            offset = self.rng.choice((region.size, region.size - PAGE, 1, PAGE + 1, 1 << 40))
            length = self.rng.choice((PAGE, 2 * PAGE, region.size + PAGE))
        return {
            "slot": self.rng.randrange(MMAP_SLOTS),
            "index": region.index,
            "offset": max(offset, 0),
            "length": max(length, PAGE),
        }

    def _op_touch(self) -> dict[str, Any]:
        return {
            "slot": self._slot(self.held.mmapped, MMAP_SLOTS),
            "offset": self.rng.choice((0, 8, PAGE - 8, PAGE, 2 * PAGE - 4)),
            "write": self.rng.random() < 0.5,
            "value": self._value(4),
        }

    def _op_munmap(self) -> dict[str, Any]:
        return {"slot": self._slot(self.held.mmapped, MMAP_SLOTS)}

    def _op_set_irqs(self) -> dict[str, Any]:
        index, count = self.rng.choice(self.profile.irqs) if self.profile.irqs else (0, 1)
        if self.rng.random() < 0.1:
            index = self._index(self.profile.num_irqs)
        data = self.rng.choice(list(IRQ_DATA))
        action = self.rng.choice(list(IRQ_ACTION))
        start = self.rng.choice((0, 0, 0, max(count - 1, 0), count, 0xFFFFFFFF))
        vectors = self.rng.choice((0, 1, 1, count, count + 1, 0xFFFFFFFF))
        return {
            "index": index,
            "data": data,
            "action": action,
            "start": start,
            "count": vectors,
            "values": [self.rng.random() < 0.5 for _ in range(min(vectors, MAX_VECTORS))],
        }

    def _op_map(self) -> dict[str, Any]:
        iova = self.rng.choice(
            (0, PAGE * self.rng.randrange(1, 64), 1 << 32, (1 << 48) - PAGE, PAGE + 1, 1 << 63)
        )
        return {
            "slot": self.rng.randrange(DMA_SLOTS),
            "iova": iova,
            "pages": self.rng.choice((1, 1, 2, 4, 16)),
        }

    def _op_unmap(self) -> dict[str, Any]:
        return {
            "slot": self._slot(set(self.held.mapped), DMA_SLOTS),
            "whole": self.rng.random() < 0.7,  # the slot's range, or a part of it
            "offset": self.rng.choice((0, PAGE, 1)),
            "length": self.rng.choice((PAGE, 2 * PAGE, 0, 1 << 63)),
        }

    def _op_dma(self) -> dict[str, Any]:
        mem = self.profile.mem_size or PAGE
        src_slot = self._slot(set(self.held.mapped), DMA_SLOTS)
        dst_slot = self._slot(set(self.held.mapped), DMA_SLOTS)
        src_page = self._page(src_slot)
        dst_page = self._page(dst_slot)
        room = PAGE * max(
            min(self.held.mapped.get(src_slot, 1) - src_page,
                self.held.mapped.get(dst_slot, 1) - dst_page), 1,
        )  # fmt: skip
        length = self.rng.choice((1, 64, PAGE, room, room // 2 + 8))
        if self.rng.random() < 0.3:  # the edges of what the engine accepts
            length = self.rng.choice((0, mem, mem + 1, room + 1, 1 << 31))
        mem_offset = self.rng.choice((0, PAGE, mem - PAGE, mem - length, mem - 1, mem))
        return {
            "direction": self.rng.choice((0, 1, 2, 2, 3)),
            "method": self.rng.choice((0, 0x10)),
            "keep": self.rng.random() < 0.4,
            # IOVAs are named by slot and page: the executor adds the slot's IOVA.
            "src_slot": src_slot,
            "dst_slot": dst_slot,
            "src_page": src_page,
            "dst_page": dst_page,
            "mem_offset": max(mem_offset, 0),
            "length": length,
        }

    def _op_mig_set(self) -> dict[str, Any]:
        return {"state": self.rng.choice(MIG_STATES)}

    def _op_mig_read(self) -> dict[str, Any]:
        return {"size": self.rng.choice((1, 64, PAGE, 1 << 20)), "keep": self.rng.random() < 0.7}

    def _op_mig_write(self) -> dict[str, Any]:
        flips = [
            [self.rng.randrange(256), 1 << self.rng.randrange(8)]
            for _ in range(self.rng.choice((0, 0, 1, 2)))
        ]
        return {
            "flips": flips,  # [position, xor mask] applied to the kept stream
            "truncate": self.rng.choice((None, None, 0, 1, 16, 100)),
            "random": self.rng.choice((0, 0, 0, 16, PAGE)),  # bytes of noise when none is kept
        }

    # -- values ---------------------------------------------------------------------------------

    def _slot(self, held: set[int], slots: int) -> int:
        """Mostly one the program holds; sometimes any (a slot with nothing in it)."""
        if held and self.rng.random() < 0.85:
            return self.rng.choice(sorted(held))
        return self.rng.randrange(slots)

    def _page(self, slot: int) -> int:
        pages = self.held.mapped.get(slot, 1)
        return self.rng.choice((0, 0, self.rng.randrange(pages), pages - 1, pages))

    def _index(self, count: int) -> int:
        choices: tuple[int, ...] = (*range(max(count, 1)), count, count + 1, 0xFFFFFFFF)
        return self.rng.choice(choices)

    def _region(self) -> Region:
        return self.rng.choice(self.profile.regions)

    def _width(self, region: Region) -> int:
        if region.size >= PAGE and self.rng.random() < 0.1:
            return self.rng.choice((3, 16, 64, PAGE))
        return self.rng.choice(WIDTHS)

    def _offset(self, size: int, width: int) -> int:
        """Where drivers' bounds checks go wrong: the edges, as well as inside."""
        edges = (0, size - width, size - width + 1, size, size - PAGE, size + PAGE, 1 << 40)
        if self.rng.random() < 0.4:
            return max(self.rng.choice(edges), 0)
        top = max(size - width, 0)
        return self.rng.randrange(top + 1) & ~(width - 1 if width in WIDTHS else 0)

    def _value(self, width: int) -> int:
        bits = 8 * min(width, 8)
        return self.rng.choice((0, 1, (1 << bits) - 1, self.rng.getrandbits(bits)))


_WEIGHTS = {
    "open": 2, "close": 1, "region_read": 6, "region_write": 8, "dma": 8, "map": 5, "unmap": 4,
    "reset": 2, "set_irqs": 4, "mmap": 2, "touch": 3, "mig_set": 4, "mig_read": 3,
    "mig_write": 3, "create": 1, "remove": 1,
}  # fmt: skip


def describe(op: Op) -> str:
    """One op as a line: 'region_write index=2 offset=0xfff8 width=8 value=0x0'."""
    parts = [op["op"]]
    for key, value in op.items():
        if key == "op":
            continue
        shown = hex(value) if isinstance(value, int) and not isinstance(value, bool) else value
        parts.append(f"{key}={shown}")
    return " ".join(str(p) for p in parts)


__all__ = ["OPS", "Generator", "Op", "Profile", "Program", "Region", "describe"]
