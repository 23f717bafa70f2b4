# SPDX-License-Identifier: MIT
"""VFIO migration v2 of the reference driver (kmod/migration.c) in each guest kernel.

Per kernel, once: the module is built for the image's kernel (harness.kmod.module_cache), a
fresh guest loads it, tests/vm/guest/migration_checks.py runs there through harness.uapi and
harness.refdev, the module is unloaded and the kernel log read. The guest reports every check
of its CHECKS catalogue on a JSON line of its own; each check is a test here, parametrized by
kernel and check (test_stop_copy_round_trip[trixie-registers]), so a failure names the check
and carries the guest's reason.

- capability: migration flags (STOP_COPY | P2P, nothing unknown), RUNNING after open, and
  PRE_COPY advertised wherever the kernel has it (so its tests cannot skip by accident).
- stop_copy: A -> B round trip of a small device reproducing BAR0, config space and BAR2 (the
  mmap-able half read through mmap, the trapped half through the fd), the stream's records
  checked against the source, the target's session counters left alone; a large device too.
- doorbells: DMA_CMD and IRQ_RAISE do nothing in STOP, STOP_COPY and RUNNING_P2P, and work in
  RUNNING (the control); the P2P arcs.
- type_mismatch, corrupted_stream: streams from the other type, and 29 spoiled streams (bad
  CRC, truncated, no END, bad header fields, bad offset/length with a valid CRC, trailing
  bytes, ...), each refused with EINVAL with the target unchanged; the control is the
  re-encoded stream, byte-identical and accepted.
- data_fd: what the saving and resuming fds allow, and what ends their sessions (state
  arcs, close, VFIO_DEVICE_RESET, removal).
- pre_copy: initial/dirty byte accounting, ENOMSG at the temporary ends, PRE_COPY_P2P
  doorbells, the chunks resent, the resumed state; skipped, saying so, where the device's
  migration flags lack PRE_COPY (bookworm's 6.1).
- the module unloads, and the kernel log holds no WARNING, BUG, Oops or Call Trace.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.kmod.module_cache import VendorModuleError, build_vendor_module
from harness.refdev import contract
from harness.uapi.raw import vfio as v
from harness.vm.guest_python import run_guest_python
from harness.vm.saved_state import start_vm
from tests.vm.guest import migration_checks as guest
from tests.vm.l1 import kernel_trouble
from tests.vm.test_refdev import GUEST_KO, image_for

pytestmark = pytest.mark.vm

# bookworm: 6.1, no PRE_COPY; trixie: 6.12 and sid: 7.2, with PRE_COPY.
KERNELS = ["bookworm", "trixie", "sid"]
GUEST_SCRIPT = Path(guest.__file__)
GUEST_TIMEOUT_S = 300.0
# The first kernel whose UAPI has VFIO_MIGRATION_PRE_COPY (and so the driver's PRE_COPY).
PRE_COPY_SINCE = (6, 2)


@dataclass(frozen=True)
class Outcome:
    status: str  # guest.OK, guest.FAIL or guest.NOT_APPLICABLE
    detail: str


@dataclass(repr=False)
class MigrationRun:
    """Everything one guest run produced, for the tests of one kernel to assert on."""

    kernel: str
    release: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    repeated: list[str] = field(default_factory=list)  # check ids reported more than once
    exit_status: int | None = None
    stderr: str = ""
    rmmod_error: str | None = None
    trouble: list[str] = field(default_factory=list)  # kernel log lines reporting a problem
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kernel} ({self.release})"

    def __repr__(self) -> str:  # what a failing test's traceback shows of it
        return f"<MigrationRun {self.label}: {len(self.outcomes)} checks reported>"

    def parse(self, stdout: str) -> None:
        for line in stdout.splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(item, dict):
                continue
            if "check" in item:
                check = str(item["check"])
                if check in self.outcomes:
                    self.repeated.append(check)
                self.outcomes[check] = Outcome(str(item["status"]), str(item["detail"]))
            elif "fact" in item:
                self.facts[str(item["fact"])] = item["value"]

    def outcome(self, check: str) -> Outcome:
        found = self.outcomes.get(check)
        if found is None:
            pytest.fail(
                f"{self.label}: the guest never reported {check} ({guest.CHECKS[check]}); "
                f"it exited {self.exit_status}:\n{tail(self.stderr)}",
                pytrace=False,
            )
        return found


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(nothing on stderr)"


def run_migration_checks(kernel: str) -> MigrationRun:
    """Build, boot, load, run the guest checks, unload, read the log: one kernel's run."""
    started = time.monotonic()
    image = image_for(kernel)
    run = MigrationRun(kernel, image.kernel_release)
    try:
        module = build_vendor_module(image)
    except VendorModuleError as err:
        pytest.fail(f"{run.label}: {err}", pytrace=False)
    run.seconds["build"] = time.monotonic() - started

    with start_vm(image) as vm:
        run.seconds["vm start"] = time.monotonic() - started - run.seconds["build"]
        marker = f"vfio-harness test_migration {uuid.uuid4()}"
        vm.run(f"echo '{marker}' >/dev/kmsg")
        vm.ssh.put(module, GUEST_KO)
        vm.run(f"insmod {GUEST_KO}")
        checks_started = time.monotonic()
        try:
            result = run_guest_python(
                vm, GUEST_SCRIPT.read_text(encoding="utf-8"), timeout=GUEST_TIMEOUT_S, check=False
            )
        finally:
            run.seconds["guest checks"] = time.monotonic() - checks_started
            rmmod = vm.ssh.run(f"rmmod {contract.MODULE_NAME}", 60, check=False)
            log = vm.run("dmesg")
    run.parse(result.stdout)
    run.exit_status = result.exit_status
    run.stderr = result.stderr
    if not rmmod.ok:
        run.rmmod_error = f"exit {rmmod.exit_status}: {rmmod.stderr.strip()}"
    run.trouble = kernel_trouble(log, marker)
    run.seconds["total"] = time.monotonic() - started
    return run


@pytest.fixture(scope="module", params=KERNELS)
def migration(request: pytest.FixtureRequest) -> Iterator[MigrationRun]:
    """One guest run per kernel, shared by every test of that kernel."""
    kernel: str = request.param
    yield run_migration_checks(kernel)


def group(name: str) -> pytest.MarkDecorator:
    """Parametrize `check` over the guest's checks `name`.*, with the part after the dot as id."""
    checks = [check for check in guest.CHECKS if check.startswith(f"{name}.")]
    assert checks, f"the guest has no {name}.* checks"
    return pytest.mark.parametrize("check", checks, ids=[c.split(".", 1)[1] for c in checks])


def assert_passed(run: MigrationRun, check: str) -> None:
    __tracebackhide__ = True
    outcome = run.outcome(check)
    if outcome.detail and outcome.status == guest.OK:
        print(f"{run.label}: {check}: {outcome.detail}")
    assert outcome.status == guest.OK, (
        f"{run.label}: {check} ({guest.CHECKS[check]}) {outcome.status}:\n{outcome.detail}"
    )


def test_guest_script_ran_to_the_end(migration: MigrationRun) -> None:
    seconds = ", ".join(f"{what} {s:.1f} s" for what, s in migration.seconds.items())
    print(f"{migration.label}: {seconds}")
    unknown = sorted(set(migration.outcomes) - set(guest.CHECKS))
    missing = [check for check in guest.CHECKS if check not in migration.outcomes]
    assert not missing, (
        f"{migration.label}: checks the guest never reported: {missing}; it exited "
        f"{migration.exit_status}:\n{tail(migration.stderr)}"
    )
    assert migration.exit_status == 0, (
        f"{migration.label}: the guest script exited {migration.exit_status}:\n"
        f"{tail(migration.stderr)}"
    )
    assert not unknown, f"{migration.label}: checks not in the guest's catalogue: {unknown}"
    assert not migration.repeated, f"{migration.label}: reported twice: {migration.repeated}"


@group("setup")
def test_setup(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("capability")
def test_migration_capability(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


def test_pre_copy_offered_where_the_kernel_has_it(migration: MigrationRun) -> None:
    """test_pre_copy skips on the device's flags; this keeps that skip honest: a kernel with
    PRE_COPY in its UAPI whose device does not offer it is a driver bug, not "not applicable"."""
    version = re.match(r"(\d+)\.(\d+)", migration.release)
    assert version, f"cannot read a version from {migration.release!r}"
    flags = migration.facts.get("migration_flags")
    assert isinstance(flags, int), f"{migration.label}: the guest reported no migration flags"
    if (int(version[1]), int(version[2])) >= PRE_COPY_SINCE:
        assert flags & v.VFIO_MIGRATION_PRE_COPY, (
            f"{migration.label}: migration flags {flags:#x} lack VFIO_MIGRATION_PRE_COPY, "
            f"which every kernel since {PRE_COPY_SINCE[0]}.{PRE_COPY_SINCE[1]} has"
        )
    else:
        assert not flags & v.VFIO_MIGRATION_PRE_COPY, (
            f"{migration.label}: migration flags {flags:#x} offer PRE_COPY, which this "
            "kernel's UAPI does not define"
        )


@group("stop_copy")
def test_stop_copy_round_trip(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("doorbells")
def test_doorbells_refused_while_stopped(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("type_mismatch")
def test_type_mismatch_refused(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("corrupt")
def test_corrupted_stream_refused(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("data_fd")
def test_data_fd(migration: MigrationRun, check: str) -> None:
    assert_passed(migration, check)


@group("pre_copy")
def test_pre_copy(migration: MigrationRun, check: str) -> None:
    outcome = migration.outcome(check)
    if outcome.status == guest.NOT_APPLICABLE:
        pytest.skip(f"{migration.label}: {outcome.detail}")
    assert_passed(migration, check)


def test_module_unloads(migration: MigrationRun) -> None:
    assert migration.rmmod_error is None, (
        f"{migration.label}: rmmod {contract.MODULE_NAME} failed: {migration.rmmod_error}"
    )


def test_kernel_log_clean(migration: MigrationRun) -> None:
    assert not migration.trouble, f"{migration.label}: the kernel log reports:\n" + "\n".join(
        migration.trouble
    )
