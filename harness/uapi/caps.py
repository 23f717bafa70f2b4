# SPDX-License-Identifier: MIT
"""Walking VFIO capability chains.

Device, region and type1 info all end in a chain of {u16 id, u16 version, u32 next} headers
whose `next` is an offset from the start of the info struct. The chain comes from a driver, so it
is checked: a header past the buffer, a backwards/looping `next` or a truncated payload is a
driver bug, reported as CapabilityChainError rather than an IndexError later.
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from typing import TypeVar

from harness.uapi.errors import CapabilityChainError

_HEADER = struct.Struct("<HHI")
_S = TypeVar("_S", bound=ctypes.Structure)


@dataclass(frozen=True)
class Capability:
    id: int
    version: int
    offset: int  # from the start of the info struct
    data: bytes  # from this cap's header up to the next cap (or the buffer's end)


def walk_capabilities(buffer: bytes, first_offset: int, header_size: int) -> list[Capability]:
    """Return the chain starting at `first_offset` (0 means no capabilities)."""
    caps: list[Capability] = []
    offset = first_offset
    seen: set[int] = set()
    while offset:
        if offset < header_size:
            raise CapabilityChainError(f"capability at {offset} overlaps the info struct")
        if offset in seen:
            raise CapabilityChainError(f"capability chain loops at offset {offset}")
        if offset + _HEADER.size > len(buffer):
            raise CapabilityChainError(
                f"capability header at {offset} runs past the {len(buffer)}-byte buffer"
            )
        seen.add(offset)
        cap_id, version, next_offset = _HEADER.unpack_from(buffer, offset)
        end = next_offset if next_offset > offset else len(buffer)
        caps.append(Capability(cap_id, version, offset, bytes(buffer[offset:end])))
        offset = next_offset
    return caps


def read_struct(cap: Capability, struct_type: type[_S], what: str) -> _S:
    """View a capability as its raw ctypes struct, failing by name if the driver sent too few
    bytes."""
    size = ctypes.sizeof(struct_type)
    if len(cap.data) < size:
        raise CapabilityChainError(f"{what} capability is {len(cap.data)} bytes, needs {size}")
    return struct_type.from_buffer_copy(cap.data[:size])


def read_array(cap: Capability, element: type[_S], start: int, count: int, what: str) -> list[_S]:
    """The `count` trailing elements (a C flexible array) that begin `start` bytes into the cap."""
    size = ctypes.sizeof(element)
    end = start + count * size
    if len(cap.data) < end:
        raise CapabilityChainError(
            f"{what} capability claims {count} entries but holds only "
            f"{max(0, len(cap.data) - start) // size}"
        )
    return [element.from_buffer_copy(cap.data, start + i * size) for i in range(count)]
