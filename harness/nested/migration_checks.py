# SPDX-License-Identifier: MIT
"""Live migration of a running guest's device, checked (issue 19, point 4).

The source guest (qtest plays its driver) leaves state everywhere a device keeps it: scratch
registers, both halves of BAR2 (mmap-ed and trapped), a DMA that keeps guest pages pinned, an
armed MSI. While QEMU holds the migration in pre-copy, the device writes guest RAM by DMA
(both methods) and the guest writes BAR2: dirty data QEMU must send again. After the
switchover the target must hold all of it, and a DMA with its MSI must work there; the source
device must have stopped, and once its QEMU is gone no page may stay pinned.

The pin count comes from the kernel, not the driver: /proc/vmstat's nr_foll_pin_acquired
minus nr_foll_pin_released (every vfio_pin_pages() is a FOLL_PIN; nothing else in L1 pins).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.checks import (
    PAGE,
    CheckError,
    equal,
    expect,
    first_difference,
    pages_spanned,
    pattern,
    wait_until,
)
from harness.nested import pci
from harness.nested.checks import Results
from harness.nested.migration import (
    MigrationDriver,
    MigrationInfo,
    device_states,
)
from harness.nested.scenario import Scenario, dma_ok
from harness.nested.step2_pci import check_enable, check_found
from harness.nested.step5_irqs import MSI_DATA, SENTINEL, clear_irqs, msi_configure, wait_ram
from harness.nested.trace import event_lines
from harness.refdev import registers as r

TITLES = {
    "prepare": "the source guest leaves state in the device, its memory and its pins",
    "precopy": "QEMU holds the migration in pre-copy while the device and guest dirty data",
    "switchover": "QEMU switches over and reports the migration completed",
    "target": "the target holds everything the source had, and its device works",
    "source": "the source device stopped, and its pins went with its QEMU",
}
STRETCH = 8 * 1024  # bytes per BAR2 stretch and per RAM stretch
PRECOPY_ROUNDS = 3  # dirty syncs QEMU must run after our writes before the switchover
WAIT_S = 60.0
SWITCHOVER_S = 120.0
PINS_SETTLE_S = 3.0
VMSTAT = Path("/proc/vmstat")
STAT_REFRESH = Path("/proc/sys/vm/stat_refresh")


def pins_held(vmstat: Path = VMSTAT, refresh: Path | None = STAT_REFRESH) -> int:
    """Pages the kernel has FOLL_PIN-ned and not released, system-wide."""
    if refresh is not None:
        # The counters are per-CPU deltas folded now and then: fold them before reading.
        refresh.write_text("1")
    counters = dict(line.split() for line in vmstat.read_text().splitlines())
    return int(counters["nr_foll_pin_acquired"]) - int(counters["nr_foll_pin_released"])


@dataclass
class Expected:
    """What the target must hold, recorded as the source got it."""

    registers: dict[int, int] = field(default_factory=dict)  # BAR0 offset -> value
    bar2: dict[int, bytes] = field(default_factory=dict)  # BAR2 offset -> bytes
    ram: dict[int, bytes] = field(default_factory=dict)  # guest-physical address -> bytes
    kept_pins: int = 0
    msi_target: int = 0
    device_written_pages: int = 0


@dataclass
class MigrationRun:
    """Both sides and what the checks found. `target` is a Scenario once the target runs."""

    source: Scenario
    migration: MigrationDriver
    target_machine: Callable[[], Scenario]  # the target's machine, made after the switchover
    quit_source: Callable[[], None]
    rng: random.Random
    expected: Expected = field(default_factory=Expected)
    numbers: dict[str, Any] = field(default_factory=dict)
    baseline_pins: int = 0
    target: Scenario | None = None

    @property
    def t(self) -> Scenario:
        assert self.target is not None
        return self.target


def _write_bar2(s: Scenario, e: Expected, offset: int, data: bytes) -> None:
    s.machine.mem_write(s.bar2 + offset, data)
    e.bar2[offset] = data


def check_source_state(m: MigrationRun) -> None:
    s, e = m.source, m.expected
    m.baseline_pins = pins_held()
    for index in range(r.NR_SCRATCH):
        offset = r.REG_SCRATCH0 + 4 * index
        value = m.rng.getrandbits(32)
        s.r.write(offset, value)
        e.registers[offset] = value
    half = s.mem_size // 2
    for offset in (PAGE, half + PAGE):  # the mmap-ed half, then the trapped one
        _write_bar2(s, e, offset, m.rng.randbytes(STRETCH))
    # A DMA that keeps its pages pinned: the source holds pins while it migrates.
    source_buffer = s.area(0)
    data = m.rng.randbytes(3 * PAGE)
    s.machine.mem_write(source_buffer, data)
    e.ram[source_buffer] = data
    dma_ok(s.r, source_buffer, 0x4000, len(data), r.DMA_TO_DEVICE | r.DMA_KEEP_PINNED, "kept pins")
    e.bar2[0x4000] = data
    e.kept_pins = pages_spanned(source_buffer, len(data))
    equal(s.r.read(r.REG_PINNED_PAGES), e.kept_pins, "the source's PINNED_PAGES")
    pins_settle(m, e.kept_pins, "pages the kernel holds pinned (vmstat)")


def msi_landed_and_rearmed(s: Scenario, target: int, what: str) -> None:
    """The completion's MSI arrived; acknowledge it and put the sentinel back for the next."""
    equal(wait_ram(s, target, MSI_DATA, 10.0), MSI_DATA, what)
    s.r.write(r.REG_IRQ_STATUS, r.IRQ_ALL)
    s.machine.mem_write(target, SENTINEL.to_bytes(4, "little"))


def check_msi_armed(m: MigrationRun) -> None:
    """MSI on, DMA_DONE unmasked, and seen to fire once: the interrupt is armed."""
    s, e = m.source, m.expected
    e.msi_target = s.area(10) + 16
    s.machine.mem_write(e.msi_target, SENTINEL.to_bytes(4, "little"))
    clear_irqs(s)
    msi_configure(s, e.msi_target, enable=True)
    s.r.write(r.REG_IRQ_MASK, r.IRQ_DMA_DONE)
    dma_ok(s.r, s.area(9), 0x9000, 64, r.DMA_TO_DEVICE | r.DMA_METHOD_RW, "copy raising the MSI")
    msi_landed_and_rearmed(s, e.msi_target, "MSI message on the source")
    e.registers[r.REG_IRQ_MASK] = r.IRQ_DMA_DONE
    e.bar2[0x9000] = s.machine.mem_read(s.area(9), 64)


def check_held_in_precopy(m: MigrationRun) -> None:
    m.migration.start()
    # A second dirty sync comes after the first full pass over RAM: from then on a page the
    # device writes reaches the target only if QEMU learns it is dirty.
    info = m.migration.wait_for(lambda i: i.ram.get("dirty-sync-count", 0) >= 2, WAIT_S)
    equal(info.status, "active", "migration status after the first pass over RAM")
    wait_until(
        lambda: "PRE_COPY" in device_states(m.source.qemu.trace()),
        "the source device in PRE_COPY",
        WAIT_S,
    )
    m.numbers["ram_pages_before_writes"] = info.ram.get("normal", 0)


def check_dirty_during_precopy(m: MigrationRun) -> None:
    """The device writes guest RAM and the guest writes BAR2 while QEMU iterates."""
    s, e = m.source, m.expected
    mark = len(s.qemu.trace())
    for slot, method in ((4, 0), (6, r.DMA_METHOD_RW)):  # pinning, then vfio_dma_rw
        data = m.rng.randbytes(5 * PAGE)
        offset = 0x10000 + slot * 0x8000
        _write_bar2(s, e, offset, data)
        destination = s.area(slot)
        dma_ok(s.r, offset, destination, len(data), r.DMA_FROM_DEVICE | method, "device->RAM")
        e.ram[destination] = data
        e.device_written_pages += pages_spanned(destination, len(data))
        # The MSI this completion raised: the target's check expects the sentinel back.
        msi_landed_and_rearmed(s, e.msi_target, "MSI during pre-copy")
    half = s.mem_size // 2
    for offset in (0x70000, half + 0x70000):
        _write_bar2(s, e, offset, m.rng.randbytes(1024))
    e.registers.update({reg: s.r.read(reg) for reg in (r.REG_DMA_SRC, r.REG_DMA_DST)})
    written = m.migration.info()
    syncs = written.ram.get("dirty-sync-count", 0)
    info = m.migration.wait_for(
        lambda i: i.ram.get("dirty-sync-count", 0) >= syncs + PRECOPY_ROUNDS, WAIT_S
    )
    equal(info.status, "active", "migration status after the writes (still in pre-copy)")
    m.numbers["device_written_pages"] = e.device_written_pages
    # QEMU learns of them from the type1 container's dirty bitmap (pages pinned, or written
    # through vfio_dma_rw, while it tracks): the kept pins count again at every sync.
    reported = dirty_pages_reported(s.qemu.trace()[mark:], e.kept_pins, s.area(0))
    m.numbers["dirty_pages_reported_after_writes"] = reported
    expect(
        reported >= e.device_written_pages,
        f"the container reported {reported} dirty pages after the device wrote "
        f"{e.device_written_pages} (vfio_get_dirty_bitmap in QEMU's trace)",
    )


_DIRTY = re.compile(
    r"^vfio_get_dirty_bitmap iova=(0x[0-9a-f]+) size= ?(0x[0-9a-f]+) .*\bdirty_pages=(\d+)"
)


def dirty_pages_reported(trace: str, kept: int = 0, kept_at: int = 0) -> int:
    """The pages the container reported dirty to QEMU, summed over the syncs in `trace`, less
    the `kept` pinned pages at `kept_at`, which every sync of their range reports again."""
    total = 0
    for line in event_lines(trace):
        found = _DIRTY.match(line)
        if not found:
            continue
        iova, size, count = found.groups()
        low = int(iova, 16)
        covers = low <= kept_at < low + int(size, 16)
        total += int(count) - (kept if covers else 0)
    return total


def check_switchover(m: MigrationRun) -> None:
    m.migration.allow_switchover()
    info = m.migration.wait_for(lambda i: i.finished, SWITCHOVER_S)
    _record(m, info)
    expect(info.status == "completed", f"migration ended {info.status}: {info.error}")
    pages = info.ram.get("normal", 0) - m.numbers["ram_pages_before_writes"]
    m.numbers["ram_pages_sent_after_writes"] = pages
    expect(
        pages >= m.expected.device_written_pages,
        f"QEMU sent {pages} RAM pages after the device wrote {m.expected.device_written_pages}",
    )


def _record(m: MigrationRun, info: MigrationInfo) -> None:
    m.numbers.update(
        status=info.status,
        downtime_ms=info.downtime_ms,
        total_ms=info.total_ms,
        setup_ms=info.setup_ms,
        device_state_bytes=info.vfio_bytes,
        ram_pages_sent=info.ram.get("normal"),
        ram_zero_pages=info.ram.get("duplicate"),
        dirty_syncs=info.ram.get("dirty-sync-count"),
    )


def check_state_path(m: MigrationRun) -> None:
    source = device_states(m.source.qemu.trace())
    m.numbers["source_states"] = source
    expect("PRE_COPY" in source and "STOP_COPY" in source, f"source device states {source}")
    expect(
        source.index("PRE_COPY") < source.index("STOP_COPY"),
        f"source device went to STOP_COPY before PRE_COPY: {source}",
    )
    equal(source[-1], "STOP", "the source device's last state")


def check_target_runs(m: MigrationRun) -> None:
    # The source reports completed once it sent everything; the target may still be loading.
    wait_until(lambda: m.migration.target_info().status == "completed", "the target loaded", WAIT_S)
    m.target = m.target_machine()
    wait_until(
        lambda: device_states(m.t.qemu.trace())[-1:] == ["RUNNING"],
        "the target device RUNNING",
        WAIT_S,
    )
    states = device_states(m.t.qemu.trace())
    m.numbers["target_states"] = states
    expect("RESUMING" in states, f"the target device never entered RESUMING: {states}")
    wait_until(lambda: m.t.qemu.run_state() == "running", "the target VM running", WAIT_S)


def check_target_config(m: MigrationRun) -> None:
    """The target's config space is the source's: BARs where the guest put them, memory and
    bus mastering on, MSI as armed."""
    src, t = m.source.dev, m.t
    bars = {i: pci.read_bar_address(t.machine, t.dev.bdf, src.bar(i)) for i in (0, 2)}
    equal(bars, {i: src.bar(i).address for i in (0, 2)}, "the target's BAR addresses")
    wanted = pci.COMMAND_MEMORY | pci.COMMAND_MASTER
    equal(t.cfg_read(pci.COMMAND, 2) & wanted, wanted, "the target's command register")
    cap = r.PCI_MSI_CAP_OFFSET
    equal(t.cfg_read(cap + pci.MSI_ADDRESS_LO, 4), m.expected.msi_target, "MSI address")
    equal(t.cfg_read(cap + pci.MSI_DATA_64, 2), MSI_DATA, "MSI data")
    flags = t.cfg_read(cap + pci.MSI_FLAGS, 2)
    expect(flags & pci.MSI_FLAGS_ENABLE != 0, f"MSI not enabled on the target: {flags:#x}")


def check_target_registers(m: MigrationRun) -> None:
    got = {offset: m.t.r.read(offset) for offset in m.expected.registers}
    wrong = {
        f"{offset:#x}": f"{got[offset]:#x} != {want:#x}"
        for offset, want in m.expected.registers.items()
        if got[offset] != want
    }
    expect(not wrong, f"BAR0 registers differ on the target: {wrong}")


def check_target_device_memory(m: MigrationRun) -> None:
    for offset, data in sorted(m.expected.bar2.items()):
        got = m.t.machine.mem_read(m.t.bar2 + offset, len(data))
        expect(got == data, f"BAR2+{offset:#x} on the target: {first_difference(got, data)}")


def check_target_guest_ram(m: MigrationRun) -> None:
    """Including the pages only the device wrote, during pre-copy."""
    for address, data in sorted(m.expected.ram.items()):
        got = m.t.machine.mem_read(address, len(data))
        expect(
            got == data, f"guest RAM at {address:#x} on the target: {first_difference(got, data)}"
        )


def check_target_dma_and_msi(m: MigrationRun) -> None:
    t, e = m.t, m.expected
    # What the source left at the MSI address, so that only the target's message counts.
    sentinel = int.from_bytes(t.machine.mem_read(e.msi_target, 4), "little")
    equal(sentinel, SENTINEL, "the MSI address on the target before its DMA")
    data = pattern(2 * PAGE + 100, 7)
    buffer = t.area(12)
    t.machine.mem_write(buffer, data)
    before = t.r.counters()
    dma_ok(t.r, buffer, 0x60000, len(data), r.DMA_TO_DEVICE, "guest->device on the target")
    after = t.r.counters()
    got = t.machine.mem_read(t.bar2 + 0x60000, len(data))
    expect(got == data, f"the target's DMA copied other bytes: {first_difference(got, data)}")
    pages = pages_spanned(buffer, len(data))
    equal(after["TOTAL_PINS"] - before["TOTAL_PINS"], pages, "pages the target's DMA pinned")
    equal(after["PINNED_PAGES"], 0, "the target's PINNED_PAGES after its DMA")
    value = wait_ram(t, e.msi_target, MSI_DATA, 10.0)
    equal(value, MSI_DATA, "the MSI message the target's completion sent (armed on the source)")


def check_source_pins_released(m: MigrationRun) -> None:
    e = m.expected
    equal(m.source.r.read(r.REG_PINNED_PAGES), e.kept_pins, "the stopped source's PINNED_PAGES")
    pins_settle(m, e.kept_pins, "pins held while the source QEMU lives")
    m.quit_source()
    pins_settle(m, 0, "pins held once the source QEMU quit (vmstat)")


def pins_settle(m: MigrationRun, expected: int, what: str) -> None:
    """The kernel's count is system-wide: another process's short pin (direct I/O) may show
    for a moment, so the count must reach `expected` within a few seconds, not at once."""
    seen: list[int] = []

    def settled() -> bool:
        seen.append(pins_held() - m.baseline_pins)
        return seen[-1] == expected

    try:
        wait_until(settled, what, PINS_SETTLE_S)
    except CheckError:
        message = f"{what}: {seen[-1]}, expected {expected} (last readings {seen[-5:]})"
        raise CheckError(message) from None


def run_migration_checks(
    m: MigrationRun,
    source_released: Callable[[MigrationRun], None] = check_source_pins_released,
) -> Results:
    """`source_released`: the last check, for a manager that ends the source QEMU itself
    (libvirt does at the migration's end) instead of leaving it to `quit_source`."""
    results = Results(titles=TITLES)
    run = results.run
    run("prepare.found", lambda: check_found(m.source))
    run("prepare.enable", lambda: check_enable(m.source), ["prepare.found"])
    ready = ["prepare.found", "prepare.enable"]
    run("prepare.state", lambda: check_source_state(m), ready)
    run("prepare.msi_armed", lambda: check_msi_armed(m), ready)
    prepared = [*ready, "prepare.state", "prepare.msi_armed"]
    run("precopy.held", lambda: check_held_in_precopy(m), prepared)
    run("precopy.dirty_writes", lambda: check_dirty_during_precopy(m), ["precopy.held"])
    run("switchover.completed", lambda: check_switchover(m), ["precopy.dirty_writes"])
    done = ["switchover.completed"]
    run("switchover.state_path", lambda: check_state_path(m), done)
    run("target.running", lambda: check_target_runs(m), done)
    on_target = ["target.running"]
    run("target.config", lambda: check_target_config(m), on_target)
    run("target.registers", lambda: check_target_registers(m), on_target)
    run("target.device_memory", lambda: check_target_device_memory(m), on_target)
    run("target.guest_ram", lambda: check_target_guest_ram(m), on_target)
    run("target.dma_and_msi", lambda: check_target_dma_and_msi(m), [*on_target, "target.config"])
    run("source.pins_released", lambda: source_released(m), done)
    return results
