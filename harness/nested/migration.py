# SPDX-License-Identifier: MIT
"""Live migration between two L1 QEMUs over QMP, and what QEMU reports about it.

    migration = Migration(source.qmp, target.qmp, f"unix:{path}")
    migration.start()                         # target listens (-incoming defer), source sends
    migration.wait_for(lambda i: i.status == "active", 30)
    migration.allow_switchover()
    info = migration.wait_for(lambda i: i.finished, 120)

The migrating machine runs a firmware that only halts (`halting_firmware`): the VM is
running, as a migrating guest is, so QEMU drives the device through RUNNING, PRE_COPY and
STOP_COPY, yet no guest code touches the device or moves its BARs; qtest plays the driver.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.nested.trace import event_lines

# x86 firmware images are mapped to end at 4 GiB and must be a multiple of 64 KiB; the CPU
# starts 16 bytes below the end.
FIRMWARE_SIZE = 64 * 1024
RESET_VECTOR = FIRMWARE_SIZE - 16
HALT_FOREVER = bytes([0xFA, 0xF4, 0xEB, 0xFD])  # cli; hlt; jmp back to the hlt

# Until allow_switchover(): QEMU may never decide the rest fits into the downtime, so the
# migration stays in pre-copy for as long as the test needs (the device keeps running).
HOLD_PARAMETERS = {"downtime-limit": 1, "max-bandwidth": 1 << 20}
# Then: switch over at the next check. A TCG-in-TCG source measures a tiny bandwidth, so the
# defaults (300 ms at the measured rate) might never let it converge.
SWITCHOVER_PARAMETERS = {
    "downtime-limit": 20_000,
    "max-bandwidth": 1 << 40,
    "avail-switchover-bandwidth": 1 << 30,
}
FINISHED = ("completed", "failed", "cancelled")
POLL_S = 0.05


class Qmp(Protocol):
    def execute(self, command: str, **arguments: Any) -> Any: ...


def halting_firmware(path: Path) -> Path:
    """A 64 KiB firmware image whose reset vector disables interrupts and halts for good."""
    image = bytearray(FIRMWARE_SIZE)
    image[RESET_VECTOR : RESET_VECTOR + len(HALT_FOREVER)] = HALT_FOREVER
    path.write_bytes(bytes(image))
    return path


@dataclass(frozen=True)
class MigrationInfo:
    """QMP query-migrate, the parts a test reads."""

    status: str
    total_ms: int | None = None
    downtime_ms: int | None = None
    setup_ms: int | None = None
    vfio_bytes: int | None = None  # device state QEMU's VFIO migration sent
    ram: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def parse_migration_info(reply: dict[str, Any]) -> MigrationInfo:
    """query-migrate's reply (an empty one before any migration: status "none")."""
    ram = reply.get("ram", {})
    return MigrationInfo(
        status=str(reply.get("status", "none")),
        total_ms=reply.get("total-time"),
        downtime_ms=reply.get("downtime"),
        setup_ms=reply.get("setup-time"),
        vfio_bytes=reply.get("vfio", {}).get("transferred"),
        ram={k: v for k, v in ram.items() if isinstance(v, int)},
        error=reply.get("error-desc"),
    )


class MigrationDriver(Protocol):
    """What migration_checks needs of a migration: QMP's (Migration) or libvirt's."""

    def start(self, hold: bool = True) -> None: ...

    def info(self) -> MigrationInfo: ...

    def target_info(self) -> MigrationInfo: ...

    def allow_switchover(self) -> None: ...

    def wait_for(self, done: Callable[[MigrationInfo], bool], timeout: float) -> MigrationInfo: ...


class Migration:
    def __init__(self, source: Qmp, target: Qmp, uri: str) -> None:
        self.source = source
        self.target = target
        self.uri = uri

    def start(self, hold: bool = True) -> None:
        """The target (started with `-incoming defer`) listens, then the source connects."""
        self.receive()
        self.send(hold)

    def receive(self) -> None:
        self.target.execute("migrate-incoming", uri=self.uri)

    def send(self, hold: bool = True) -> None:
        """`hold`: stay in pre-copy until allow_switchover(); else switch over at once."""
        parameters = HOLD_PARAMETERS if hold else SWITCHOVER_PARAMETERS
        self.source.execute("migrate-set-parameters", **parameters)
        self.source.execute("migrate", uri=self.uri)

    def info(self) -> MigrationInfo:
        return parse_migration_info(self.source.execute("query-migrate"))

    def target_info(self) -> MigrationInfo:
        return parse_migration_info(self.target.execute("query-migrate"))

    def allow_switchover(self) -> None:
        self.source.execute("migrate-set-parameters", **SWITCHOVER_PARAMETERS)

    def wait_for(self, done: Callable[[MigrationInfo], bool], timeout: float) -> MigrationInfo:
        """The first query-migrate for which `done` holds; TimeoutError naming the last one."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if done(info) or info.finished:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"migration still {info.status} after {timeout:.0f} s: {info}")
            time.sleep(POLL_S)


# QEMU's trace event for each VFIO device state it sets: "... (hmdev) PRE_COPY" and the like.
_SET_STATE = re.compile(r"^vfio_migration_set_device_state\b.*?\b([A-Z][A-Z_0-9]+)\s*$")


def device_states(trace: str) -> list[str]:
    """The VFIO migration states QEMU moved the device through, in order (from its trace)."""
    found = []
    for line in event_lines(trace):
        match = _SET_STATE.search(line.strip())
        if match:
            found.append(match.group(1))
    return found
