"""kmemleak reports and lockdep's state, read from files shaped like the kernel's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.core.debug_checks import Kmemleak, lockdep_live, split_reports
from harness.plugin.health import leak_findings

# The shape of /sys/kernel/debug/kmemleak (mm/kmemleak.c print_unreferenced) on 6.12.
LEAK = """\
unreferenced object 0xffff888005a1c000 (size 64):
  comm "python3", pid 131, jiffies 4294903376
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace (crc 5c7f3a1e):
    kmemleak_alloc+0x4b/0x80
    __kmalloc_cache_noprof+0x2bd/0x3c0
    hmdev_dma_pinned+0x1d2/0x5d0 [vfio_harness_mdev]
    hmdev_dma_run+0x3ff/0x8a0 [vfio_harness_mdev]
    hmdev_bar0_rw+0x277/0x630 [vfio_harness_mdev]
unreferenced object 0xffff888005a1c400 (size 64):
  comm "python3", pid 131, jiffies 4294903380
  backtrace (crc 1f00aa02):
    kmemleak_alloc+0x4b/0x80
    __kmalloc_cache_noprof+0x2bd/0x3c0
    hmdev_dma_pinned+0x1d2/0x5d0 [vfio_harness_mdev]
    hmdev_dma_run+0x3ff/0x8a0 [vfio_harness_mdev]
    hmdev_bar0_rw+0x277/0x630 [vfio_harness_mdev]
"""


def test_each_unreferenced_object_is_one_finding_named_by_its_allocator() -> None:
    lines = LEAK.splitlines()
    assert [len(block) for block in split_reports(lines)] == [10, 8]
    findings = leak_findings(lines)
    assert [f.kind for f in findings] == ["kmemleak", "kmemleak"]
    assert findings[0].headline.endswith("allocated in hmdev_dma_pinned")
    assert "(size 64), allocated in" in findings[0].headline
    # the same backtrace at another address and time is the same leak
    assert findings[0].fingerprint == findings[1].fingerprint


def test_no_report_no_finding_and_a_failed_scan_is_one() -> None:
    assert leak_findings([]) == []
    (failed,) = leak_findings(["vfio-harness: kmemleak scan failed, no more scans: EBUSY"])
    assert failed.kind == "kmemleak" and "scan failed" in failed.headline


def test_scan_writes_scan_reads_and_clears(tmp_path: Path) -> None:
    written: list[str] = []

    class FakeKmemleak(Kmemleak):
        def _command(self, command: str) -> None:
            written.append(command)
            if command == "clear":
                Path(self.path).write_text("")

    leaks = tmp_path / "kmemleak"
    leaks.write_text(LEAK)
    fake = FakeKmemleak(str(leaks))
    assert fake.scan() == LEAK.splitlines()
    assert written == ["scan", "clear"]
    assert fake.scan() == []
    assert Kmemleak.find(str(tmp_path / "absent")) is None


def test_settle_and_scan_scans_twice_the_age_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = iter([["from the first scan"], ["unreferenced object 0x1"]])
    slept: list[float] = []
    monkeypatch.setattr(Kmemleak, "scan", lambda _self: next(reports))
    monkeypatch.setattr(time, "sleep", slept.append)
    found = Kmemleak(str(tmp_path / "kmemleak")).settle_and_scan(6.0)
    assert found == ["from the first scan", "unreferenced object 0x1"]
    assert len(slept) == 1 and 5.0 < slept[0] <= 6.0  # the first scan's time counts


def test_lockdep_live_reads_debug_locks(tmp_path: Path) -> None:
    stats = tmp_path / "lockdep_stats"
    stats.write_text(
        " lock-classes:                         1290 [max: 8192]\n"
        " debug_locks:                              1\n"
    )
    assert lockdep_live(str(stats)) is True
    stats.write_text(" debug_locks:                              0\n")
    assert lockdep_live(str(stats)) is False
    assert lockdep_live(str(tmp_path / "none")) is None
