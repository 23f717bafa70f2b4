# SPDX-License-Identifier: MIT
"""Guest side of bench/kmod_cycles.py: N load/unload cycles of our module, one JSON line each.

    python3 load_unload.py MODULE.ko CYCLES [SCAN_EVERY]

A cycle: insmod; as many devices of every type as available_instances allows; each opened in
a type1 container of its own, a pinned copy from user memory into BAR2 checked, an INTx raised
and received, closed; every device removed; rmmod. Each line has the cycle's seconds, the
devices it used, the kernel's SUnreclaim and VmallocUsed (kB) after it (caches dropped), and
kmemleak's unreferenced objects where the kernel has it (a scan every SCAN_EVERY cycles, 10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from harness.core.debug_checks import Kmemleak, split_reports
from harness.mdev import MdevDevice, MdevSysfs
from harness.refdev import Direction, RefDevice
from harness.refdev import contract as c
from harness.refdev import registers as r
from harness.uapi import PAGE_SIZE, DmaBuffer, EventFd, open_type1
from harness.uapi.raw import vfio as v

IOVA = 0x10000000
COPY = 4 * PAGE_SIZE
KMEMLEAK_MIN_AGE = 6  # s: kmemleak reports only objects older than 5 s


def meminfo_kb(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


def memory() -> dict[str, int]:
    """Unreclaimable slab and vmalloc (kB), after the kernel dropped what it can reclaim."""
    Path("/proc/sys/vm/drop_caches").write_text("3")
    return {"sunreclaim_kb": meminfo_kb("SUnreclaim"), "vmalloc_kb": meminfo_kb("VmallocUsed")}


class Leaks:
    """kmemleak's reports since the start (the boot's objects forgotten); none without it."""

    def __init__(self) -> None:
        self.kmemleak = Kmemleak.find()
        self.reports: list[list[str]] = []
        if self.kmemleak is not None:
            self.kmemleak.clear()

    def scan(self) -> int | None:
        if self.kmemleak is None:
            return None
        self.reports += split_reports(self.kmemleak.scan())
        return len(self.reports)


def exercise(device: MdevDevice) -> None:
    group = device.iommu_group
    assert group is not None, f"mdev {device.uuid} has no IOMMU group"
    with open_type1(group, device.uuid) as opened, DmaBuffer(COPY) as buffer, EventFd() as fd:
        ref = RefDevice(opened.device)
        opened.dma.map_buffer(IOVA, buffer)
        data = os.urandom(COPY)
        buffer.write(0, data)
        ref.dma(IOVA, 0, COPY, Direction.TO_DEVICE).check()
        assert ref.mem_read(0, COPY) == data, "the copy did not arrive"
        opened.device.irq(v.VFIO_PCI_INTX_IRQ_INDEX).attach_eventfds([fd.fd])
        ref.write32(r.REG_IRQ_MASK, r.IRQ_SOFTWARE)
        ref.write32(r.REG_IRQ_RAISE, r.IRQ_SOFTWARE)
        assert fd.wait(5.0) == 1, "no INTx"


def cycle(module: str) -> int:
    subprocess.run(["insmod", module], check=True)
    sysfs = MdevSysfs()
    devices: list[MdevDevice] = []
    try:
        for ref_type in c.TYPES:
            mdev_type = sysfs.find_type(ref_type.type_id, c.PARENT_NAME)
            for _ in range(mdev_type.available_instances):
                devices.append(mdev_type.create(uuid.uuid4()))
        for device in devices:
            exercise(device)
    finally:
        for device in devices:
            device.remove(missing_ok=True)
        subprocess.run(["rmmod", c.MODULE_NAME], check=True)
    return len(devices)


def main() -> None:
    module, cycles = sys.argv[1], int(sys.argv[2])
    scan_every = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    leaks = Leaks()
    print(json.dumps({"cycle": 0, **memory(), "kmemleak": leaks.scan()}), flush=True)
    for number in range(1, cycles + 1):
        began = time.monotonic()
        used = cycle(module)
        line = {
            "cycle": number,
            "seconds": round(time.monotonic() - began, 3),
            "devices": used,
            **memory(),
            "kmemleak": leaks.scan() if number % scan_every == 0 else None,
        }
        print(json.dumps(line), flush=True)
    time.sleep(KMEMLEAK_MIN_AGE)  # the last cycles' objects become old enough to report
    print(json.dumps({"final_kmemleak": leaks.scan(), "first_leak": leaks.reports[:1]}))


if __name__ == "__main__":
    main()
