# SPDX-License-Identifier: MIT
"""The console parser on real console logs of Debian's 6.1 kernel (see data/console/README.md),
and the watcher that follows a growing log."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from harness.vm.console import (
    MAX_SPLAT_LINES,
    ConsoleScanner,
    SplatKind,
    VerdictKind,
    normalise,
    parse_console,
    strip_prefix,
)
from harness.vm.console_watch import ConsoleWatch

DATA = Path(__file__).parent / "data" / "console"

# fixture stem -> (verdict kind, first splat kind, headline substring, ready marker seen)
EXPECTED = {
    "panic-vfs-no-root": (
        VerdictKind.PANIC,
        SplatKind.PANIC,
        "Kernel panic - not syncing: VFS: Unable to mount root fs",
        False,
    ),
    "panic-kill-init": (
        VerdictKind.PANIC,
        SplatKind.PANIC,
        "Kernel panic - not syncing: Attempted to kill init!",
        False,
    ),
    "panic-sysrq-crash": (
        VerdictKind.PANIC,
        SplatKind.PANIC,
        "Kernel panic - not syncing: sysrq triggered crash",
        True,
    ),
    "oops-null-deref-panic": (
        VerdictKind.PANIC,
        SplatKind.OOPS,
        "BUG: kernel NULL pointer dereference",
        False,
    ),
    "bug-kernel-bug-at": (VerdictKind.BUG, SplatKind.BUG, "kernel BUG at", True),
    "warning-module-init": (VerdictKind.WARNING, SplatKind.WARNING, "WARNING: CPU:", True),
    "hung-task": (VerdictKind.HUNG, SplatKind.HUNG, "INFO: task insmod:", None),
    "soft-lockup": (VerdictKind.HUNG, SplatKind.HUNG, "watchdog: BUG: soft lockup - CPU#0", None),
}
BOOTS = ("1", "2")


def lines_of(name: str) -> list[str]:
    return (DATA / f"{name}.log").read_text().splitlines()


@pytest.mark.parametrize(("stem", "boot"), list(itertools.product(EXPECTED, BOOTS)))
def test_every_fixture_is_classified(stem: str, boot: str) -> None:
    kind, splat_kind, headline, ready = EXPECTED[stem]
    verdict = parse_console(lines_of(f"{stem}-{boot}"))
    assert verdict.kind is kind
    assert verdict.failed
    assert verdict.first is not None
    assert verdict.first.kind is splat_kind
    assert verdict.first_bad_line is not None
    assert headline in verdict.first_bad_line
    if ready is not None:
        assert verdict.ready is ready
    assert verdict.fatal is (kind is VerdictKind.PANIC)


def test_clean_boot_is_not_flagged() -> None:
    verdict = parse_console(lines_of("clean-boot"))
    assert verdict.kind is VerdictKind.READY
    assert verdict.ready
    assert not verdict.failed
    assert verdict.first_bad_line is None
    assert verdict.fingerprint is None
    assert verdict.excerpt == ()


def test_clean_boot_before_ready_is_clean() -> None:
    lines = [line for line in lines_of("clean-boot") if "HARNESS-READY" not in line]
    assert parse_console(lines).kind is VerdictKind.CLEAN


@pytest.mark.parametrize("stem", list(EXPECTED))
def test_fingerprint_is_stable_across_boots(stem: str) -> None:
    first, second = (parse_console(lines_of(f"{stem}-{boot}")) for boot in BOOTS)
    assert first.fingerprint is not None
    assert first.fingerprint == second.fingerprint
    # The two boots really differ: timestamps (and for some, KASLR and stack addresses).
    assert first.excerpt != second.excerpt


def test_fingerprints_differ_between_different_bugs() -> None:
    prints = {stem: parse_console(lines_of(f"{stem}-1")).fingerprint for stem in EXPECTED}
    assert len(set(prints.values())) == len(prints)


def test_fingerprint_ignores_kaslr_and_timestamps() -> None:
    """Boot 2 of the Oops used the bzImage (KASLR on), boot 1 the vmlinux (KASLR off)."""
    without, with_kaslr = (lines_of(f"oops-null-deref-panic-{boot}") for boot in BOOTS)
    assert "Kernel Offset: disabled" in "\n".join(without)
    assert "Kernel Offset: 0x" in "\n".join(with_kaslr)
    assert parse_console(without).fingerprint == parse_console(with_kaslr).fingerprint


def test_fingerprint_survives_rewritten_addresses_and_cpus() -> None:
    lines = lines_of("warning-module-init-1")

    def rewrite(line: str) -> str:
        line = re.sub(r"ffff[0-9a-f]{12}", "ffff8000deadbeef", line)
        line = re.sub(r"CPU: \d+ PID: \d+", "CPU: 7 PID: 4242", line)
        return line.replace("+0x11/0x18", "+0x2a/0x40").replace("[    2.", "[  812.")

    shifted = [rewrite(line) for line in lines]
    assert shifted != lines
    assert parse_console(shifted).fingerprint == parse_console(lines).fingerprint


def test_fingerprint_changes_with_the_function() -> None:
    lines = lines_of("warning-module-init-1")
    renamed = [line.replace("crashme_warn", "crashme_other") for line in lines]
    assert parse_console(renamed).fingerprint != parse_console(lines).fingerprint


def test_oops_excerpt_spans_the_splat_to_its_end_marker() -> None:
    verdict = parse_console(lines_of("oops-null-deref-panic-1"))
    oops, panic = verdict.splats
    assert strip_prefix(oops.lines[0]).startswith("BUG: kernel NULL pointer dereference")
    assert any(strip_prefix(line).startswith("Oops: 0002") for line in oops.lines)
    assert strip_prefix(oops.lines[-1]).startswith("---[ end trace")
    assert "crashme_oops [crashme]" in oops.signature
    assert panic.kind is SplatKind.PANIC
    assert "Fatal exception" in panic.headline


def test_warning_excerpt_starts_at_cut_here_and_names_the_warning() -> None:
    verdict = parse_console(lines_of("warning-module-init-1"))
    assert verdict.first is not None
    assert strip_prefix(verdict.excerpt[0]).startswith("------------[ cut here ]")
    assert strip_prefix(verdict.excerpt[-1]).startswith("---[ end trace")
    assert "WARNING: CPU: 1 PID: 88 at" in verdict.first.headline
    assert "crashme_warn [crashme]" in verdict.first.signature


def test_panic_without_end_marker_ends_with_its_trace() -> None:
    verdict = parse_console(lines_of("panic-vfs-no-root-1"))
    assert len(verdict.splats) == 1
    assert "mount_block_root" in verdict.splats[0].signature
    assert strip_prefix(verdict.excerpt[-1]).startswith("Kernel Offset:")


@pytest.mark.parametrize(
    ("name", "headline"),
    [("hung-task-1", "INFO: task insmod:"), ("soft-lockup-1", "watchdog: BUG: soft lockup")],
)
def test_each_repeated_hang_report_is_its_own_splat(name: str, headline: str) -> None:
    """The kernel repeats these reports ("stuck for 3s!", "6s!", ...): one bug, one print."""
    verdict = parse_console(lines_of(name))
    assert len(verdict.splats) > 1
    assert len({splat.fingerprint for splat in verdict.splats}) == 1
    for splat in verdict.splats:
        assert strip_prefix(splat.lines[0]).startswith(headline)
        assert strip_prefix(splat.lines[-1]).strip() == "</TASK>"


def test_a_lockup_is_fingerprinted_by_its_stack_not_its_sampled_rip() -> None:
    verdict = parse_console(lines_of("soft-lockup-1"))
    assert verdict.first is not None
    assert "RIP: 0010:delay_tsc" in "\n".join(verdict.excerpt)
    assert "delay_tsc" not in verdict.first.signature
    assert verdict.first.signature.splitlines()[2] == "crashme_spin [crashme]"


def test_signature_drops_generic_and_unreliable_frames() -> None:
    signature = parse_console(lines_of("panic-sysrq-crash-1")).first
    assert signature is not None
    frames = signature.signature.splitlines()[2:]
    assert frames[0] == "sysrq_handle_crash"
    assert "panic" not in frames
    assert "dump_stack_lvl" not in frames
    assert "_printk" not in frames  # printed as "? _printk": not a reliable frame
    assert "__handle_sysrq" in frames  # "__handle_sysrq.cold" without its clone suffix


def test_incremental_scanner_matches_whole_parse() -> None:
    lines = lines_of("oops-null-deref-panic-2")
    scanner = ConsoleScanner()
    for index, line in enumerate(lines):
        scanner.feed(line)
        if index == 10:
            assert scanner.verdict().kind is VerdictKind.CLEAN
    assert scanner.verdict() == parse_console(lines)


def test_ready_marker_must_be_a_whole_line() -> None:
    lines = [
        "[    0.0] Kernel command line: console=ttyS0 harness.ready=HARNESS-READY",
        "echo HARNESS-READY-NOT",
    ]
    assert not parse_console(lines).ready
    assert parse_console([*lines, "HARNESS-READY\r"]).ready
    assert parse_console(["[    3.1] HARNESS-READY"]).ready
    assert parse_console(["GO"], ready_marker="GO").ready


def test_stuck_initramfs_is_a_hung_boot() -> None:
    verdict = parse_console(
        ["Gave up waiting for root file system device.", "ALERT!  /dev/vda does not exist."]
    )
    assert verdict.kind is VerdictKind.HUNG
    assert verdict.first_bad_line == "Gave up waiting for root file system device."


def test_end_kernel_panic_alone_still_means_panic() -> None:
    """A console whose start was lost (rotated, truncated) still shows the panic's end."""
    line = "[   9.1] ---[ end Kernel panic - not syncing: Fatal exception ]---"
    verdict = parse_console(["random", line])
    assert verdict.kind is VerdictKind.PANIC
    assert verdict.first_bad_line == line


def test_splat_length_is_bounded() -> None:
    lines = ["[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2", *(["filler"] * 500)]
    verdict = parse_console(lines)
    assert verdict.first is not None
    assert len(verdict.first.lines) == MAX_SPLAT_LINES


def test_prefixes_and_normalisation() -> None:
    assert strip_prefix("<4>[   12.345678] [  T42] Oops: 0002 [#1]\n") == "Oops: 0002 [#1]"
    warning = "WARNING: CPU: 3 PID: 77 at /build/x/drivers/vfio/vfio_main.c:1234 f+0x1a/0x40"
    assert normalise(warning) == "WARNING: at vfio_main.c:N f"
    assert normalise("BUG: unable to handle page fault for address: ffffc90000123000") == (
        "BUG: unable to handle page fault for address: X"
    )


# --- the watcher -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_watch_reads_incrementally_and_keeps_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    clock = FakeClock()
    watch = ConsoleWatch(log, clock=clock)
    assert watch.poll() == []  # QEMU has not created the file yet
    log.write_bytes(b"[    0.1] Linux version 6.1\n[    0.2] half a li")
    clock.now += 1.5
    first = watch.poll()
    assert [line.text for line in first] == ["[    0.1] Linux version 6.1"]
    assert first[0].elapsed_s == 1.5
    assert str(first[0]).startswith("[host +   1.500s] [    0.1]")
    with log.open("ab") as stream:
        stream.write(b"ne\r\nHARNESS-READY\n\xff\xfe garbage\n")
    assert [line.text for line in watch.poll()] == [
        "[    0.2] half a line",
        "HARNESS-READY",
        "\ufffd\ufffd garbage",
    ]
    assert watch.verdict.ready
    assert watch.poll() == []


def test_watch_waits_for_ready(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    clock = FakeClock()
    watch = ConsoleWatch(log, clock=clock)
    chunks = iter([b"booting\n", b"", b"HARNESS-READY\n"])

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        with log.open("ab") as stream:
            stream.write(next(chunks, b""))

    result = watch.wait(10, sleep=sleep, interval_s=1)
    assert result.verdict.kind is VerdictKind.READY
    assert not result.timed_out
    assert clock.now == 103.0


def test_watch_fails_fast_on_panic_with_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("\n".join(lines_of("panic-vfs-no-root-1")) + "\n")
    clock = FakeClock()
    result = ConsoleWatch(log, clock=clock).wait(600, sleep=clock.sleep)
    assert result.verdict.kind is VerdictKind.PANIC
    assert not result.timed_out
    assert clock.now == 100.0  # no waiting at all
    assert "Kernel Offset: disabled" in result.tail[-1]


def test_watch_times_out_on_a_silent_guest(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("booting\n")
    clock = FakeClock()
    result = ConsoleWatch(log, clock=clock).wait(5, sleep=clock.sleep, interval_s=1)
    assert result.timed_out
    assert result.verdict.kind is VerdictKind.CLEAN
    assert result.tail == ("[host +   0.000s] booting",)


def test_watch_stops_when_qemu_exits_and_reads_the_last_partial_line(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_bytes(b"[    1.0] reboot: Power down\nno newline at the end")
    clock = FakeClock()
    result = ConsoleWatch(log, clock=clock).wait(600, alive=lambda: False, sleep=clock.sleep)
    assert not result.timed_out
    assert result.tail[-1].endswith("no newline at the end")


def test_watch_after_ready_keeps_watching_for_a_panic(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    log.write_text("\n".join(lines_of("panic-sysrq-crash-1")) + "\n")
    clock = FakeClock()
    watch = ConsoleWatch(log, clock=clock)
    result = watch.wait(60, until_ready=False, sleep=clock.sleep)
    assert result.verdict.ready
    assert result.verdict.kind is VerdictKind.PANIC
