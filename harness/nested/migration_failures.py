# SPDX-License-Identifier: MIT
"""Migrations that must fail, and a source that must survive them (issue 19, point 5).

One source guest (qtest-driven, running a halting firmware) leaves state in its device, then:

- other_type: a target on an mdev of another type. Our driver refuses the stream's header
  (type and BAR2 size) with EINVAL in RESUMING; the migration fails.
- target_died: the target QEMU is killed while the migration is in pre-copy.
- corrupt_stream: the source migrates into a file; one byte inside the device's data is
  flipped, and a target loading it must be refused (the record's CRC), while a second target
  loads the untouched file and holds the source's state: the file itself was sound.

After each, the source VM runs, its device is back in RUNNING with its state intact, and a
DMA works on it.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.checks import PAGE, equal, expect, first_difference, wait_until
from harness.nested.checks import Results
from harness.nested.live_migration import close_all, machine_scenario, migrating_qemu
from harness.nested.migration import Migration, device_states, halting_firmware
from harness.nested.migration_checks import STRETCH, WAIT_S
from harness.nested.qemu import L1Qemu, qemu_version
from harness.nested.run import create_mdev
from harness.nested.scenario import Scenario, dma_ok
from harness.nested.step2_pci import check_enable, check_found
from harness.nested.trace import trace_lines
from harness.refdev import contract as c
from harness.refdev import registers as r
from harness.refdev.migration_stream import MAGIC

TITLES = {
    "source": "the source guest has a device with state",
    "other_type": "a target of another type refuses the stream; the source runs on",
    "target_died": "a target that dies mid-stream leaves the source running",
    "corrupt_stream": "a corrupted stream is refused; the same stream untouched is not",
}
EINVAL = 22
FLIP_AT = 4096  # bytes after the stream's magic: inside the first chunk of BAR2


@dataclass
class FailureRun:
    workdir: Path
    firmware: Path
    source_qemu: L1Qemu
    source: Scenario
    rng: random.Random
    targets: list[L1Qemu] = field(default_factory=list)
    mdevs: list[str] = field(default_factory=list)
    scratch: int = 0
    stretch: bytes = b""
    numbers: dict[str, Any] = field(default_factory=dict)

    def target(self, name: str, ref_type: c.RefType) -> tuple[L1Qemu, str]:
        uuid, _group = create_mdev(ref_type)
        self.mdevs.append(uuid)
        qemu = migrating_qemu(self.workdir, name, uuid, self.firmware, incoming=True)
        self.targets.append(qemu)
        return qemu, uuid

    def migration(self, target: L1Qemu | None, uri: str) -> Migration:
        return Migration(self.source_qemu.qmp, target.qmp if target else _NoTarget(), uri)


def check_source_has_state(f: FailureRun) -> None:
    s = f.source
    f.scratch = f.rng.getrandbits(32)
    s.r.write(r.REG_SCRATCH0, f.scratch)
    f.stretch = f.rng.randbytes(STRETCH)
    s.machine.mem_write(s.bar2 + PAGE, f.stretch)


def _source_survived(f: FailureRun, what: str) -> None:
    """Running, device RUNNING, state intact, a DMA works."""
    s = f.source
    # QEMU reports the failure before its clean-up puts the device back in RUNNING.
    wait_until(
        lambda: s.qemu.run_state() == "running", f"the source VM running after {what}", WAIT_S
    )
    wait_until(
        lambda: device_states(s.qemu.trace())[-1:] == ["RUNNING"],
        f"the source device back in RUNNING after {what}",
        WAIT_S,
    )
    equal(s.r.read(r.REG_SCRATCH0), f.scratch, f"the source's scratch register after {what}")
    got = s.machine.mem_read(s.bar2 + PAGE, len(f.stretch))
    expect(got == f.stretch, f"the source's BAR2 after {what}: {first_difference(got, f.stretch)}")
    data = f.rng.randbytes(PAGE)
    s.machine.mem_write(s.area(1), data)
    dma_ok(s.r, s.area(1), 0x50000, len(data), r.DMA_TO_DEVICE, f"the source's DMA after {what}")
    got = s.machine.mem_read(s.bar2 + 0x50000, len(data))
    expect(got == data, f"the source's DMA after {what} copied {first_difference(got, data)}")


def _refused_with_einval(target: L1Qemu) -> list[str]:
    """QEMU's account of our driver refusing a write of device data (ret -22)."""
    lines = trace_lines(target.trace(), "vfio_load_state_device_data")
    return [line for line in lines if line.rstrip().endswith(f"ret -{EINVAL}")]


def _wait_exit(qemu: L1Qemu, timeout: float) -> int | None:
    try:
        return qemu.process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def check_other_type_refused(f: FailureRun) -> None:
    target, _ = f.target("other-type", c.LARGE)
    migration = f.migration(target, f"unix:{f.workdir / 'other-type.sock'}")
    migration.start()
    info = migration.wait_for(lambda i: i.finished, WAIT_S)
    equal(info.status, "failed", "the migration to a device of another type")
    refused = _refused_with_einval(target)
    expect(
        bool(refused),
        "the target's driver did not refuse the device data with EINVAL (QEMU's trace of "
        f"vfio_load_state_device_data: {trace_lines(target.trace(), 'vfio_load_state_device_data')}"
        f"); target stderr: {target.stderr_tail()}",
    )
    f.numbers["other_type_refusal"] = refused[0].strip()
    _source_survived(f, "the refused migration")


def check_target_died(f: FailureRun) -> None:
    target, _ = f.target("dying", c.SMALL)
    migration = f.migration(target, f"unix:{f.workdir / 'dying.sock'}")
    migration.start()
    migration.wait_for(lambda i: i.ram.get("dirty-sync-count", 0) >= 2, WAIT_S)
    target.process.send_signal(signal.SIGKILL)
    target.process.wait(WAIT_S)
    info = migration.wait_for(lambda i: i.finished, WAIT_S)
    equal(info.status, "failed", "the migration whose target was killed")
    f.numbers["target_died_error"] = info.error
    _source_survived(f, "the target's death")


def _flip_device_byte(stream: Path, corrupt: Path) -> int:
    data = bytearray(stream.read_bytes())
    magic = MAGIC.to_bytes(4, "little")
    at = data.find(magic)
    expect(at >= 0, f"no device stream (magic {magic!r}) in the migration file")
    data[at + FLIP_AT] ^= 0x01
    corrupt.write_bytes(bytes(data))
    return at + FLIP_AT


def check_corrupt_stream_refused(f: FailureRun) -> None:
    stream, corrupt = f.workdir / "stream.bin", f.workdir / "corrupt.bin"
    saving = f.migration(None, f"file:{stream}")
    saving.send(hold=False)
    info = saving.wait_for(lambda i: i.finished, WAIT_S)
    equal(info.status, "completed", "the migration into a file")
    f.numbers["stream_bytes"] = stream.stat().st_size
    f.numbers["flipped_byte_at"] = _flip_device_byte(stream, corrupt)

    bad, _ = f.target("corrupt", c.SMALL)
    f.migration(bad, f"file:{corrupt}").receive()
    code = _wait_exit(bad, WAIT_S)
    refused = _refused_with_einval(bad)
    expect(
        bool(refused),
        f"the corrupted stream was not refused with EINVAL (QEMU exit {code}); stderr: "
        f"{bad.stderr_tail()}",
    )
    expect(code not in (None, 0), f"the target that loaded the corrupted stream exited {code}")

    good, _ = f.target("intact", c.SMALL)
    f.migration(good, f"file:{stream}").receive()
    _wait_loaded(good)
    loaded = machine_scenario(good, "", "", c.SMALL).machine
    bar0, bar2 = f.source.dev.bar(0).address, f.source.bar2
    equal(loaded.mmio_read(bar0 + r.REG_SCRATCH0, 4), f.scratch, "the scratch register loaded")
    got = loaded.mem_read(bar2 + PAGE, len(f.stretch))
    expect(got == f.stretch, f"BAR2 loaded from the file: {first_difference(got, f.stretch)}")
    # The source stopped for the file migration ("postmigrate"): it goes on.
    f.source_qemu.qmp.execute("cont")
    wait_until(lambda: f.source.qemu.run_state() == "running", "the source running again", WAIT_S)
    _source_survived(f, "the corrupted stream's refusal")


class _NoTarget:
    def execute(self, command: str, **arguments: Any) -> Any:
        raise AssertionError(f"a migration into a file has no target QEMU ({command})")


def _wait_loaded(qemu: L1Qemu) -> None:
    """The incoming migration from a file completed (the target then waits, paused or not)."""

    def loaded() -> bool:
        gone = qemu.why_gone()
        expect(gone is None, f"the target loading the untouched stream {gone}")
        status = str(qemu.qmp.execute("query-migrate").get("status"))
        expect(status != "failed", "the target failed to load the untouched stream")
        return status == "completed"

    wait_until(loaded, "the untouched stream loaded", WAIT_S)


def run_failure_checks(f: FailureRun) -> Results:
    results = Results(titles=TITLES)
    run = results.run
    run("source.found", lambda: check_found(f.source))
    run("source.enable", lambda: check_enable(f.source), ["source.found"])
    run("source.state", lambda: check_source_has_state(f), ["source.enable"])
    ready = ["source.state"]
    run("other_type.refused", lambda: check_other_type_refused(f), ready)
    run("target_died.source_runs", lambda: check_target_died(f), ready)
    run("corrupt_stream.refused", lambda: check_corrupt_stream_refused(f), ready)
    return results


def run_migration_failures(workdir: Path, seed: int) -> dict[str, Any]:
    report: dict[str, Any] = {"variant": "migration-failures", "qemu_l1": qemu_version()}
    report["l1_qemu_accelerator"] = "tcg"
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    firmware = halting_firmware(workdir / "halt.bin")
    source_qemu: L1Qemu | None = None
    run: FailureRun | None = None
    uuid = ""
    try:
        uuid, group = create_mdev(c.SMALL)
        source_qemu = migrating_qemu(workdir, "source", uuid, firmware)
        source = machine_scenario(source_qemu, uuid, group, c.SMALL)
        run = FailureRun(workdir, firmware, source_qemu, source, random.Random(seed))
        results = run_failure_checks(run)
        report["results"] = results.results
        report["seconds"] = results.seconds
        report["numbers"] = run.numbers
    except Exception:
        report["setup"] = traceback.format_exc()
        report.setdefault("results", Results().results)
    finally:
        qemus = {"source": source_qemu} if source_qemu else {}
        qemus.update({q.spec.workdir.name: q for q in (run.targets if run else [])})
        close_all(report, qemus, [m for m in (uuid, *(run.mdevs if run else [])) if m])
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report
