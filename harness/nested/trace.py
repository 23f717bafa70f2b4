# SPDX-License-Identifier: MIT
"""QEMU's trace log (`-trace enable=vfio_* -D FILE`, the log backend Debian builds in):
one line per event, "<event> <text>", flushed as it happens. With `-msg timestamp=on`, which
libvirt gives every QEMU it starts, each line begins "PID@SECONDS:" instead.
"""

from __future__ import annotations

import re

# Matches the "PID@SECONDS:" that libvirt's QEMUs put before each event, or nothing.
TRACE_LINE_PREFIX = r"(?:\d+@[\d.]+:)?"
_PREFIX = re.compile(TRACE_LINE_PREFIX)


def event_lines(trace: str) -> list[str]:
    """The trace's lines, each starting with its event's name."""
    return [_PREFIX.sub("", line, count=1) for line in trace.splitlines()]


def trace_lines(trace: str, event: str) -> list[str]:
    return [line for line in event_lines(trace) if line.split(" ", 1)[0] == event]


_ADD_RAM = re.compile(r"region_add \[ram\] (0x[0-9a-f]+) - (0x[0-9a-f]+)")

_DEL = re.compile(r"region_del (0x[0-9a-f]+) - (0x[0-9a-f]+)")


def mapped_ranges(trace: str) -> list[tuple[int, int]]:
    """Guest-physical ranges QEMU's VFIO listener DMA-mapped (VFIO_IOMMU_MAP_DMA), minus the
    ones it unmapped since, in trace order."""
    live: list[tuple[int, int]] = []
    for line in event_lines(trace):
        added, deleted = _ADD_RAM.search(line), _DEL.search(line)
        if line.startswith("vfio_listener_region_add_ram") and added:
            live.append((int(added.group(1), 16), int(added.group(2), 16)))
        elif line.startswith("vfio_listener_region_del ") and deleted:
            gone = (int(deleted.group(1), 16), int(deleted.group(2), 16))
            live = [span for span in live if span != gone]
    return live


def covered(ranges: list[tuple[int, int]], start: int, length: int) -> bool:
    return any(low <= start and start + length - 1 <= high for low, high in ranges)
