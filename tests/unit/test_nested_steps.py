# SPDX-License-Identifier: MIT
"""harness.nested's checks: trace parsing, the step-1 checks on QEMU 7.2's trace format,
the results' messages, and the prerequisite chain when the device is missing."""

from __future__ import annotations

from typing import Any

import pytest

from harness.core.checks import CheckError, pages_spanned, pattern
from harness.nested import step1_qemu
from harness.nested.checks import Results
from harness.nested.machine import Probed
from harness.nested.scenario import Scenario
from harness.nested.steps import run_steps
from harness.nested.trace import covered, mapped_ranges, trace_lines

UUID = "4aadce01-f74a-4642-ab3f-7a908cade458"
# The lines QEMU 7.2 logs with -trace enable=vfio_* while realizing our device (small type).
TRACE = f"""\
vfio_realize  ({UUID}) group 0
vfio_listener_region_add_ram region_add [ram] 0x0 - 0x7ffffff [0x7feb88600000]
vfio_listener_region_add_skip SKIPPING region_add 0xfec00000 - 0xfec00fff
vfio_mdev  ({UUID}) is_mdev 1
vfio_get_device Device {UUID} flags: 3, regions: 9, irqs: 5
vfio_region_setup Device {UUID}, region 0 "{UUID} BAR 0", flags: 0x3, offset: 0x0, size: 0x1000
vfio_region_sparse_mmap_header Device {UUID} region 2: 1 sparse mmap entries
vfio_region_sparse_mmap_entry sparse entry 0 [0x0 - 0x7ffff]
vfio_region_setup Device {UUID}, region 2 "{UUID} BAR 2", flags: 0xf, offset: 0x20000000000, \
size: 0x100000
vfio_populate_device_config Device {UUID} config:
vfio_region_mmap Region {UUID} BAR 2 mmaps[0] [0x0 - 0x7ffff]
vfio_msi_setup {UUID} PCI MSI CAP @0x40
vfio_intx_enable  ({UUID})
vfio_listener_region_del region_del 0x0 - 0x7ffffff
vfio_listener_region_add_ram region_add [ram] 0x0 - 0xbffff [0x7feb88600000]
vfio_listener_region_add_ram region_add [ram] 0x100000 - 0x7ffffff [0x7feb88700000]
"""


def test_trace_lines_match_whole_event_names() -> None:
    assert len(trace_lines(TRACE, "vfio_region_setup")) == 2
    assert trace_lines(TRACE, "vfio_region") == []


def test_mapped_ranges_follow_adds_and_deletes() -> None:
    ranges = mapped_ranges(TRACE)
    assert ranges == [(0, 0xBFFFF), (0x100000, 0x7FFFFFF)]
    assert covered(ranges, 0x400_0000, 0x10_0000)
    assert not covered(ranges, 0xBF000, 0x2000)  # runs past the first range's end
    later = TRACE + "vfio_listener_region_del region_del 0x100000 - 0x7ffffff\n"
    assert not covered(mapped_ranges(later), 0x400_0000, 16)


def test_libvirts_timestamped_trace_reads_the_same() -> None:
    # libvirt starts QEMU with -msg timestamp=on: every line begins "PID@SECONDS:".
    stamped = "".join(f"492@1796654191.18855{i % 10}:{line}\n" for i, line in enumerate(
        TRACE.splitlines()))  # fmt: skip
    assert trace_lines(stamped, "vfio_region_setup") == trace_lines(TRACE, "vfio_region_setup")
    assert mapped_ranges(stamped) == mapped_ranges(TRACE)
    step1_qemu.check_trace_device(stamped, UUID)
    step1_qemu.check_trace_irqs(stamped)


def test_step1_accepts_qemus_account_of_our_device() -> None:
    step1_qemu.check_trace_device(TRACE, UUID)
    step1_qemu.check_trace_regions(TRACE, 1 << 20)
    step1_qemu.check_trace_irqs(TRACE)


def test_step1_names_what_is_missing() -> None:
    with pytest.raises(CheckError, match="BAR2 region size QEMU read: got 0x100000, expected"):
        step1_qemu.check_trace_regions(TRACE, 8 << 20)
    without_msi = "\n".join(line for line in TRACE.splitlines() if "msi" not in line)
    with pytest.raises(CheckError, match="no MSI capability"):
        step1_qemu.check_trace_irqs(without_msi)
    with pytest.raises(CheckError, match="no vfio_get_device event"):
        step1_qemu.check_trace_device(TRACE, "another-uuid")


def test_results_name_the_step_and_the_prerequisite() -> None:
    results = Results()

    def broken() -> None:
        raise CheckError("BAR0 size: got 0x2000, expected 0x1000")

    def crashed() -> None:
        raise KeyError("regions")

    assert results.run("2.found", lambda: None)
    assert not results.run("2.bars", broken, ["2.found"])
    assert not results.run("3.bar0_registers", lambda: None, ["2.bars"])
    assert not results.run("1.region_info", crashed)
    assert results.results["2.found"] == "ok"
    assert results.results["2.bars"] == (
        "step 2 (the guest sees our PCI device: IDs, BARs, MSI capability) broke: "
        "BAR0 size: got 0x2000, expected 0x1000"
    )
    assert results.results["3.bar0_registers"] == "not run: needs 2.bars, which failed"
    assert "broke: KeyError: 'regions'" in results.results["1.region_info"]
    assert set(results.failed()) == {"2.bars", "3.bar0_registers", "1.region_info"}


def test_patterns_and_pages() -> None:
    assert pattern(300, 1) != pattern(300, 2)
    assert pattern(300, 1)[1:] != pattern(300, 1)[:-1]  # a shifted copy does not match
    assert pages_spanned(4096 - 16, 48) == 2
    assert pages_spanned(4096 - 16, 3 * 4096 + 123) == 5
    assert pages_spanned(0, 4096) == 1


class NoDevice:
    """A machine whose bus lacks our device, and a QEMU with an empty trace."""

    name = "fake"
    may_stop = True
    intx_acked_by_guest = False

    def probe(self, vendor: int, device: int) -> Probed | None:
        return None

    def dma_area(self) -> tuple[int, int]:
        return 0x400_0000, 0x400_0000

    def trace(self) -> str:
        return ""

    def open_files(self) -> list[str]:
        return ["/dev/null"]

    def query_pci(self) -> list[dict[str, Any]]:
        return []


def test_a_missing_device_fails_step2_and_skips_the_rest_by_name() -> None:
    fake: Any = NoDevice()
    results = run_steps(Scenario(fake, fake, UUID, "0", 1 << 20, 48)).results
    assert results["1.vfio_fds"].startswith("step 1 (QEMU opens the mdev")
    assert "QEMU has no open /dev/vfio/vfio" in results["1.vfio_fds"]
    assert "no PCI function 1de5:0001 on the fake machine's bus" in results["2.found"]
    assert results["2.bars"] == "not run: needs 2.found, which failed"
    assert results["5.intx"] == "not run: needs 2.found, 2.enable, 3.bar0_registers, which failed"
    assert list(results) == [
        "1.vfio_fds", "1.device_info", "1.region_info", "1.irq_info", "1.dma_map",
        "2.found", "2.identity", "2.bars", "2.msi_capability", "2.qemu_view", "2.enable",
        "3.bar0_registers", "3.bar0_reaches_driver", "3.bar2_mmap_direct",
        "3.bar2_trapped_counted", "3.qemu_traps",
        "4.dma_pin", "4.dma_vfio_dma_rw", "4.mmap_is_device_memory", "4.unmap_unpins",
        "5.msi", "5.intx", "5.err_irq",
    ]  # fmt: skip
