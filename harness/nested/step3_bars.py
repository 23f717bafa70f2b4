# SPDX-License-Identifier: MIT
"""Step 3: guest accesses to the trapped BAR0 and BAR2's trapped half reach the vendor
driver, exactly once each (its BAR0_ACCESSES and BAR2_TRAPPED counters); accesses to BAR2's
mmap-ed half go straight to device memory and are never counted.
"""

from __future__ import annotations

import re

from harness.core.checks import PAGE, equal, expect
from harness.nested.scenario import Scenario
from harness.nested.trace import trace_lines
from harness.refdev import registers as r


def check_bar0_registers(s: Scenario) -> None:
    equal(s.r.read(r.REG_ID), r.ID_VALUE, "BAR0 ID register")
    equal(s.r.read(r.REG_VERSION), r.VERSION_VALUE, "BAR0 VERSION register")
    equal(s.r.read(r.REG_MEM_SIZE), s.mem_size, "BAR0 MEM_SIZE register")


def check_bar0_reaches_driver(s: Scenario) -> None:
    values = [0xA5000000 | i << 8 | i for i in range(r.NR_SCRATCH)]
    before = s.r.read(r.REG_BAR0_ACCESSES)
    for i, value in enumerate(values):
        s.r.write(r.REG_SCRATCH0 + 4 * i, value)
    got = [s.r.read(r.REG_SCRATCH0 + 4 * i) for i in range(r.NR_SCRATCH)]
    after = s.r.read(r.REG_BAR0_ACCESSES)
    equal(got, values, "scratch registers read back")
    # Each guest access is one read/write on the device fd, counted by the driver; the
    # counter's own read counts itself.
    accesses = 2 * r.NR_SCRATCH + 1
    equal(
        after - before,
        accesses,
        f"BAR0_ACCESSES increase over {2 * r.NR_SCRATCH} scratch accesses and its own read "
        "(each trapped guest access must reach the vendor driver exactly once)",
    )


def _bar2_round_trip(s: Scenario, offsets: list[int], tag: int, half: str) -> int:
    """Write a word at each offset of BAR2, read them back; how much BAR2_TRAPPED grew."""
    before = s.r.read(r.REG_BAR2_TRAPPED)
    for i, offset in enumerate(offsets):
        s.machine.mmio_write(s.bar2 + offset, 4, tag | i)
    got = [s.machine.mmio_read(s.bar2 + offset, 4) for offset in offsets]
    equal(got, [tag | i for i in range(len(offsets))], f"BAR2 {half} half read back")
    return s.r.read(r.REG_BAR2_TRAPPED) - before


def check_bar2_mmap_is_direct(s: Scenario) -> None:
    half = s.mem_size // 2
    grew = _bar2_round_trip(s, [0, PAGE + 4, half - 4], 0xC0DE0000, "mmap-able")
    equal(grew, 0, "BAR2_TRAPPED increase over accesses to the mmap-ed half")


def check_bar2_trap_counts(s: Scenario) -> None:
    half = s.mem_size // 2
    offsets = [half, half + PAGE + 8, s.mem_size - 4]
    grew = _bar2_round_trip(s, offsets, 0x7A900000, "trapped")
    equal(grew, 2 * len(offsets), "BAR2_TRAPPED increase over trapped-half accesses")


_REGION_WRITE = re.compile(r"region(\d+)\+(0x[0-9a-f]+),")


def check_trace_traps(s: Scenario) -> None:
    """QEMU's account: BAR2 writes it forwarded to the fd (vfio_region_write) are all in the
    trapped half; the mmap-ed half never went through it."""
    writes = [
        m for m in map(_REGION_WRITE.search, trace_lines(s.qemu.trace(), "vfio_region_write")) if m
    ]
    bar2 = [int(m.group(2), 16) for m in writes if m.group(1) == "2"]
    expect(bool(bar2), "QEMU forwarded no BAR2 write to the device fd")
    low = [hex(off) for off in bar2 if off < s.mem_size // 2]
    expect(not low, f"QEMU trapped writes to BAR2's mmap-able half at {low}")
