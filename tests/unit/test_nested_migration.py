# SPDX-License-Identifier: MIT
"""harness.nested.migration: the halting firmware, query-migrate's reply, the device states
in QEMU's trace (a real QEMU 10.0 trace), and the QMP sequence of a migration; the migrating
machines' command line; the kernel's pin count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.nested.migration import (
    FIRMWARE_SIZE,
    HOLD_PARAMETERS,
    SWITCHOVER_PARAMETERS,
    Migration,
    device_states,
    halting_firmware,
    parse_migration_info,
)
from harness.nested.migration_checks import dirty_pages_reported, pins_held
from harness.nested.qemu import L1Spec, qemu_command

DATA = Path(__file__).parent / "data" / "qemu"
MDEV = "/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"


def test_the_firmware_halts_at_the_reset_vector(tmp_path: Path) -> None:
    image = halting_firmware(tmp_path / "halt.bin").read_bytes()
    assert len(image) == FIRMWARE_SIZE == 64 * 1024  # QEMU wants a multiple of 64 KiB
    # cli; hlt; jmp -3 (back to the hlt), 16 bytes below the end where the CPU starts.
    assert image[-16:-12] == bytes.fromhex("faf4ebfd")
    assert image.count(0) == FIRMWARE_SIZE - 4


def test_device_states_of_a_real_source_trace() -> None:
    trace = (DATA / "migration-source-trace.log").read_text()
    assert device_states(trace) == [
        "RUNNING_P2P",
        "RUNNING",
        "PRE_COPY",
        "PRE_COPY_P2P",
        "STOP_COPY",
        "STOP",
    ]
    assert device_states("vfio_region_read  (x:region0+0xc0, 4) = 0x4\n") == []


def test_device_states_with_libvirts_timestamps() -> None:
    # libvirt runs QEMU with `-msg timestamp=on`: every trace line starts "PID@SECONDS:".
    trace = (
        "1186@1796642578.491991:vfio_migration_set_device_state  (45cf16bf) state PRE_COPY\n"
        "1186@1796642578.910053:vfio_migration_set_device_state  (45cf16bf) state STOP_COPY\n"
        "1018@1796642579.136193:vfio_region_read  (45cf16bf:region0+0x98, 4) = 0x1\n"
    )
    assert device_states(trace) == ["PRE_COPY", "STOP_COPY"]


def test_query_migrate_replies_parse() -> None:
    assert parse_migration_info({}).status == "none"
    reply = {
        "vfio": {"transferred": 1053516},
        "status": "completed",
        "setup-time": 26,
        "downtime": 35,
        "total-time": 5267,
        "ram": {"normal": 6, "duplicate": 32844, "mbps": 2.3, "dirty-sync-count": 2081},
    }
    info = parse_migration_info(reply)
    assert info.finished
    assert (info.downtime_ms, info.total_ms, info.setup_ms) == (35, 5267, 26)
    assert info.vfio_bytes == 1053516
    assert info.ram == {"normal": 6, "duplicate": 32844, "dirty-sync-count": 2081}
    failed = parse_migration_info({"status": "failed", "error-desc": "Unable to write"})
    assert failed.finished and failed.error == "Unable to write"
    assert not parse_migration_info({"status": "active"}).finished


class FakeQmp:
    def __init__(self, name: str, log: list[tuple[str, str, dict[str, Any]]]) -> None:
        self.name, self.log = name, log
        self.statuses = ["setup", "active", "active", "completed"]

    def execute(self, command: str, **arguments: Any) -> Any:
        self.log.append((self.name, command, arguments))
        if command == "query-migrate":
            # The last status stays.
            return {"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}
        return {}


def test_a_migration_is_held_then_let_go() -> None:
    log: list[tuple[str, str, dict[str, Any]]] = []
    source, target = FakeQmp("source", log), FakeQmp("target", log)
    migration = Migration(source, target, "unix:/w/m.sock")
    migration.start()
    # The target listens before the source connects; the source is held in pre-copy.
    assert log == [
        ("target", "migrate-incoming", {"uri": "unix:/w/m.sock"}),
        ("source", "migrate-set-parameters", HOLD_PARAMETERS),
        ("source", "migrate", {"uri": "unix:/w/m.sock"}),
    ]
    assert migration.wait_for(lambda i: i.status == "active", 5).status == "active"
    migration.allow_switchover()
    assert log[-1] == ("source", "migrate-set-parameters", SWITCHOVER_PARAMETERS)
    assert migration.wait_for(lambda i: False, 5).status == "completed"  # finished ends it


def test_waiting_names_the_status_it_timed_out_in() -> None:
    log: list[tuple[str, str, dict[str, Any]]] = []
    stuck = FakeQmp("source", log)
    stuck.statuses = ["active"]
    with pytest.raises(TimeoutError, match="still active"):
        Migration(stuck, FakeQmp("target", log), "unix:/m").wait_for(lambda i: False, 0.1)


def test_the_migrating_machines_run_a_halting_firmware_without_ivshmem() -> None:
    spec = L1Spec(
        MDEV,
        Path("/w"),
        "qtest",
        ivshmem_bytes=0,
        vfio_options=("enable-migration=on",),
        paused=False,
        bios=Path("/w/halt.bin"),
        extra_args=("-incoming", "defer"),
    )
    argv = qemu_command(spec)
    assert "-S" not in argv
    assert argv[argv.index("-bios") + 1] == "/w/halt.bin"
    devices = [argv[i + 1] for i, word in enumerate(argv) if word == "-device"]
    assert devices == [f"vfio-pci,sysfsdev={MDEV},id=hmdev,enable-migration=on"]
    assert "-object" not in argv
    assert argv[-2:] == ["-incoming", "defer"]


def test_pins_held_folds_then_subtracts(tmp_path: Path) -> None:
    vmstat = tmp_path / "vmstat"
    vmstat.write_text("nr_free_pages 100\nnr_foll_pin_acquired 1234\nnr_foll_pin_released 1230\n")
    refresh = tmp_path / "stat_refresh"
    refresh.write_text("")
    assert pins_held(vmstat, refresh) == 4
    assert refresh.read_text() == "1"


def test_dirty_pages_reported_sums_the_containers_bitmaps() -> None:
    # QEMU 10.0's lines, as the source wrote them during pre-copy.
    trace = (
        "vfio_get_dirty_bitmap iova=0x0 size= 0xc0000 bitmap_size=0x18 start=0x0 dirty_pages=0\n"
        "vfio_region_read  (x:region0+0xc0, 4) = 0x4\n"
        "vfio_get_dirty_bitmap iova=0x100000 size= 0x7f00000 bitmap_size=0xfe0 start=0x100000 "
        "dirty_pages=16\n"
        "vfio_get_dirty_bitmap iova=0x100000 size= 0x7f00000 bitmap_size=0xfe0 start=0x100000 "
        "dirty_pages=4\n"
    )
    assert dirty_pages_reported(trace) == 20
    assert dirty_pages_reported("") == 0
    # 4 kept pinned pages at 0x4000ff0 are reported at every sync of their range: not news.
    assert dirty_pages_reported(trace, kept=4, kept_at=0x4000FF0) == 12
    assert dirty_pages_reported(trace, kept=4, kept_at=0xE000_0000) == 20  # in no range
    # libvirt's QEMUs run with -msg timestamp=on: every trace line starts "PID@SECONDS:".
    stamped = "".join(f"573@1796652870.729371:{line}\n" for line in trace.splitlines())
    assert dirty_pages_reported(stamped) == 20
