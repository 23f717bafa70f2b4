# SPDX-License-Identifier: MIT
"""Issue 19, point 4 through libvirt: `virsh migrate --live` of a domain with our mdev from
the system libvirt to a second libvirt daemon on the same L1, onto a second mdev of the same
type, checked by harness/nested/migration_checks.py exactly as the plain-QEMU migration is.

Two daemons on one machine. libvirt refuses a migration whose two ends report the same host
UUID ("Attempt to migrate guest to the same host"), and for root `qemu:///session` is the
system daemon itself. So the destination is a session libvirtd of an unprivileged user that
we start (and stop) ourselves, with its own config (`host_uuid`), sockets and state under
the work directory; root's virsh reaches it as `qemu+unix:///session?socket=...`. Its QEMU
runs as that user: the target mdev's /dev/vfio/GROUP is lent to the user meanwhile, and the
daemon gets an unlimited RLIMIT_MEMLOCK (VFIO pins guest pages).

Each domain is a qtest domain (harness/mgmt/qtest_domain.py), with QEMU's
`enable-migration=on` on the mdev through <qemu:override> (without a dirty tracker QEMU 10
blocks migrating it).
The destination's XML (`virsh migrate --xml`) is the source's `dumpxml --migratable` with
the other mdev's UUID and the destination's own socket and trace: libvirt accepts a changed
mdev UUID as ABI-compatible.

The migration is held in pre-copy as in the plain run: `--bandwidth 1` (MiB/s) and
`migrate-setmaxdowntime 1` until allow_switchover() lifts both (`migrate-setmaxdowntime`,
`migrate-setspeed`). Its progress is `virsh domjobinfo`: `qemu-monitor-command` is a job of
its own that waits for the migration to end (it timed out after 120 s). At the end libvirt
ends the source QEMU, so the final numbers are `virsh domjobinfo --completed`, and the device
state bytes are what QEMU's trace says it read from the device (libvirt 11.3's job
statistics have no VFIO entry).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import random
import re
import signal
import subprocess
import time
import traceback
import uuid as uuid_mod
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.checks import attempt, equal, expect, poll_for
from harness.mgmt.domain_xml import QEMU_NS, mdev_alias
from harness.mgmt.libvirt_qemu import LibvirtQemu
from harness.mgmt.qtest_domain import (
    QTEST_SOCKET,
    TRACE_LOG,
    QtestSocket,
    alive,
    qtest_domain,
    qtest_scenario,
    side_dir,
)
from harness.mgmt.virsh import URI, VirshError, state, virsh
from harness.nested.checks import Results
from harness.nested.machine import Probed
from harness.nested.migration import (
    FINISHED,
    HOLD_PARAMETERS,
    SWITCHOVER_PARAMETERS,
    MigrationInfo,
    halting_firmware,
)
from harness.nested.migration_checks import MigrationRun, pins_settle, run_migration_checks
from harness.nested.qemu import qemu_version
from harness.nested.run import create_mdev, remove_mdev, tail
from harness.nested.scenario import Regs, Scenario
from harness.refdev import contract as c

DOMAIN = "vfio-harness-mig"
SESSION_USER = "vfio-harness-mig"
MIGRATE_URI = "tcp://127.0.0.1"  # the stream's address: L1's hostname may not resolve
HOLD_MIB_S = 1  # `virsh migrate --bandwidth` while held (HOLD_PARAMETERS' max-bandwidth)
SWITCHOVER_MIB_S = SWITCHOVER_PARAMETERS["max-bandwidth"] >> 20
MIGRATE_TIMEOUT_S = 600.0
# From `virsh migrate` to QEMU sending: libvirt starts the destination QEMU (TCG in a TCG L1,
# on a host other VMs share) before the source begins.
BEGIN_S = 180.0
DAEMON_START_S = 30.0
POLL_S = 0.1
# Between `virsh domjobinfo` polls: each is a query job libvirt serializes with its own
# steps of the migration.
JOBINFO_POLL_S = 0.5

# -- pure: the domains' XML and libvirt's numbers -----------------------------------------


def migrating_domain(uuid: str, firmware: Path, qtest_socket: Path, trace_log: Path) -> str:
    """The source domain: a qtest domain with QEMU's migration of our mdev enabled."""
    properties = {"enable-migration": "on"}
    return qtest_domain(DOMAIN, uuid, firmware, qtest_socket, trace_log, properties)


def destination_xml(migratable: str, mdevs: Mapping[str, str], args: Mapping[str, str]) -> str:
    """The source's `dumpxml --migratable` for `virsh migrate --xml`: mdev UUIDs and
    <qemu:commandline> arguments replaced as `mdevs` and `args` map them; the rest (the
    domain's UUID, its devices and their addresses) must stay as it is."""
    ET.register_namespace("qemu", QEMU_NS)
    root = ET.fromstring(migratable)
    for address in root.iterfind("devices/hostdev[@type='mdev']/source/address"):
        old = address.get("uuid", "")
        if old in mdevs:
            address.set("uuid", mdevs[old])
    for arg in root.iterfind(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg"):
        value = arg.get("value", "")
        for old, new in args.items():
            value = value.replace(old, new)
        arg.set("value", value)
    return ET.tostring(root, encoding="unicode")


_JOB_LINE = re.compile(r"^([A-Za-z][^:]*):\s+(.*?)\s*$")


def parse_jobinfo(text: str) -> dict[str, str]:
    """`virsh domjobinfo`'s "Key:  value unit" lines."""
    found = {}
    for line in text.splitlines():
        match = _JOB_LINE.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _number(fields: Mapping[str, str], key: str) -> int | None:
    value = fields.get(key, "").split()
    return int(value[0]) if value and value[0].isdigit() else None


# `virsh domjobinfo`'s "Job type" as query-migrate's status.
JOB_STATUS = {
    "None": "none",
    "Unbounded": "active",
    "Bounded": "active",
    "Completed": "completed",
    "Failed": "failed",
    "Cancelled": "cancelled",
}


def job_info(jobinfo: str, error: str | None = None) -> MigrationInfo:
    """`virsh domjobinfo` (with --completed or not) as query-migrate's MigrationInfo. Times
    and page counts are exact there; byte counts virsh rounds, so none are taken."""
    fields = parse_jobinfo(jobinfo)
    ram = {
        "normal": _number(fields, "Normal pages"),
        "duplicate": _number(fields, "Constant pages"),
        "dirty-sync-count": _number(fields, "Iteration"),
    }
    return MigrationInfo(
        status=JOB_STATUS.get(fields.get("Job type", "None"), "none"),
        total_ms=_number(fields, "Time elapsed"),
        downtime_ms=_number(fields, "Total downtime"),
        setup_ms=_number(fields, "Setup time"),
        ram={k: v for k, v in ram.items() if v is not None},
        error=error,
    )


def completed_info(jobinfo: str, ok: bool, error: str | None = None) -> MigrationInfo:
    """How a finished `virsh migrate` ended: `ok` (it exited 0) decides the status."""
    info = job_info(jobinfo, error)
    status = "completed" if ok else "failed"
    return MigrationInfo(
        status, info.total_ms, info.downtime_ms, info.setup_ms, None, info.ram, error
    )


_SAVE_BLOCK = re.compile(r"\bvfio_save_block\b.*?\bdata_size\s+(\d+)")


def device_bytes_read(trace: str) -> int:
    """Bytes of device state QEMU read from the device's migration fd (its trace's
    vfio_save_block events)."""
    return sum(int(m.group(1)) for m in _SAVE_BLOCK.finditer(trace))


# -- the second daemon --------------------------------------------------------------------


@dataclass
class SessionDaemon:
    """An unprivileged user's session libvirtd with its own host UUID; close() ends it, gives
    back the VFIO group nodes it was lent and removes the user if we added it."""

    workdir: Path
    user: str = SESSION_USER
    host_uuid: str = field(default_factory=lambda: str(uuid_mod.uuid4()))
    process: subprocess.Popen[bytes] | None = None
    added_user: bool = False
    lent: dict[Path, tuple[int, int]] = field(default_factory=dict)  # node -> (uid, gid)

    @property
    def run_dir(self) -> Path:  # XDG_RUNTIME_DIR
        return self.workdir / "run"

    @property
    def cache_dir(self) -> Path:  # XDG_CACHE_HOME: libvirt's per-domain logs
        return self.workdir / "cache"

    @property
    def socket(self) -> Path:
        return self.run_dir / "libvirt" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///session?socket={self.socket}"

    @property
    def config(self) -> Path:
        return self.workdir / "libvirtd.conf"

    def qemu(self, domain: str, trace_log: Path) -> LibvirtQemu:
        return LibvirtQemu(
            domain,
            trace_log,
            uri=self.uri,
            run_dir=self.run_dir / "libvirt" / "qemu" / "run",
            log_dir=self.cache_dir / "libvirt" / "qemu" / "log",
        )

    def start(self) -> None:
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir", str(self.workdir),
                 "--shell", "/usr/sbin/nologin", self.user],
                check=True, capture_output=True,
            )  # fmt: skip
            self.added_user = True
        entry = pwd.getpwnam(self.user)
        for sub in ("", "run", "cache", "config"):
            path = self.workdir / sub
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.run_dir.chmod(0o700)
        self.config.write_text(f'host_uuid = "{self.host_uuid}"\n')
        self.config.chmod(0o644)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.workdir),
            "XDG_RUNTIME_DIR": str(self.run_dir),
            "XDG_CACHE_HOME": str(self.cache_dir),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
        }
        argv = ["prlimit", "--memlock=unlimited:unlimited", "setpriv", f"--reuid={self.user}"]
        argv += [f"--regid={entry.pw_gid}", "--init-groups"]
        argv += ["libvirtd", "--config", str(self.config), "--timeout", "0"]
        with open(self.workdir / "libvirtd.log", "wb") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + DAEMON_START_S
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"session libvirtd did not start: {self.log_tail()}")
            time.sleep(POLL_S)
        virsh("uri", uri=self.uri)  # answers

    def log_tail(self) -> list[str]:
        with contextlib.suppress(OSError):
            return tail((self.workdir / "libvirtd.log").read_text(errors="replace"), 10)
        return []

    def lend_group(self, group: str) -> None:
        """The user's QEMU opens /dev/vfio/GROUP (root's, mode 0600) itself."""
        node = Path("/dev/vfio") / group
        stat = node.stat()
        self.lent[node] = (stat.st_uid, stat.st_gid)
        entry = pwd.getpwnam(self.user)
        os.chown(node, entry.pw_uid, entry.pw_gid)

    def close(self) -> list[str]:
        """End the daemon and whatever else runs as the user (the virtlogd it may have
        started outlives it), give back the lent nodes, remove the user we added; what could
        not be done."""
        problems = []
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        if self.added_user:
            problems += self._end_processes()
        for node, (uid, gid) in self.lent.items():
            try:
                os.chown(node, uid, gid)
            except OSError as err:
                problems.append(f"giving {node} back to {uid}:{gid}: {err}")
        if self.added_user:
            done = subprocess.run(["userdel", self.user], check=False, capture_output=True)
            if done.returncode != 0:
                problems.append(f"userdel {self.user}: {done.stderr.decode(errors='replace')}")
        return problems

    def _end_processes(self) -> list[str]:
        uid = pwd.getpwnam(self.user).pw_uid
        for signum, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in _pids_of(uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
            if poll_for(lambda: not _pids_of(uid), wait_s, POLL_S):
                return []
        return [f"processes of {self.user} left running: {_pids_of(uid)}"]


def _pids_of(uid: int) -> list[int]:
    """The processes running as `uid` (L1 has no procps: no pgrep)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
    return found


# -- the migration ------------------------------------------------------------------------


class LibvirtMigration:
    """migration_checks' MigrationDriver through `virsh migrate` (managed, not peer-to-peer:
    virsh talks to both daemons)."""

    def __init__(
        self,
        domain: str,
        dest_uri: str,
        dest_xml: Path,
        trace: Callable[[], str],
        out: Path,
        pump: Callable[[], None] = lambda: None,
    ) -> None:
        # `pump`: reads what the source's qtest sent unasked. Its IRQ messages (the PIT's
        # IOAPIC input 0, intercepted, ~36 a second) fill the socket while nobody reads it, and then
        # QEMU's main loop blocks in the write: libvirt's migration never begins.
        self.pump = pump
        self.domain = domain
        self.dest_uri = dest_uri
        self.dest_xml = dest_xml
        self.trace = trace  # the source QEMU's trace: the device bytes QEMU read
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        self.final: MigrationInfo | None = None
        self.argv: list[str] = []
        self.begin_s: float | None = None  # from `virsh migrate` to QEMU sending

    def start(self, hold: bool = True) -> None:
        downtime = HOLD_PARAMETERS if hold else SWITCHOVER_PARAMETERS
        virsh("migrate-setmaxdowntime", self.domain, str(downtime["downtime-limit"]))
        self.argv = ["virsh", "-c", URI, "migrate", "--live", "--xml", str(self.dest_xml)]
        self.argv += ["--migrateuri", MIGRATE_URI]
        self.argv += ["--bandwidth", str(HOLD_MIB_S if hold else SWITCHOVER_MIB_S)]
        self.argv += [self.domain, self.dest_uri]
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        started = time.monotonic()
        while self.running() and "vfio_save_setup" not in self.trace():
            if time.monotonic() - started > BEGIN_S:
                raise TimeoutError(
                    f"QEMU did not begin sending {BEGIN_S:.0f} s after virsh; {self.stuck()}"
                )
            self._pump(POLL_S)
        self.begin_s = round(time.monotonic() - started, 2)

    def stuck(self) -> str:
        """What each party says while a migration does not begin."""
        said = []
        asks: list[tuple[str, Callable[[], object]]] = [
            ("source domjobinfo", lambda: virsh("domjobinfo", self.domain, timeout=15)),
            (
                "target domjobinfo",
                lambda: virsh("domjobinfo", self.domain, timeout=15, uri=self.dest_uri),
            ),
            ("target domstate", lambda: state(self.domain, uri=self.dest_uri)),
        ]
        for what, ask in asks:
            try:
                said.append(f"{what}: {str(ask()).strip()!r}")
            except Exception as err:  # a diagnosis, whatever it hits
                said.append(f"{what}: {err}")
        if self.process is not None:
            with contextlib.suppress(OSError):
                wchan = Path(f"/proc/{self.process.pid}/wchan").read_text()
                said.append(f"virsh migrate waits in {wchan}")
        return "; ".join(said)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def info(self) -> MigrationInfo:
        if not self.running():
            return self.finish()
        if "vfio_save_setup" not in self.trace():
            # libvirt is still preparing: its migration job cannot begin while a
            # qemu-monitor-command holds the domain ("cannot acquire state change lock (held
            # by monitor=qemuDispatchDomainMonitorCommand)"), so ask QEMU only once it sends.
            return MigrationInfo(status="none")
        try:
            # Not QMP through qemu-monitor-command: that is a MODIFY job, which waits for
            # the migration to end; domjobinfo is a query libvirt answers meanwhile.
            return job_info(virsh("domjobinfo", self.domain))
        except VirshError:
            # libvirt ended the source QEMU in between ("domain is not running"), maybe
            # before virsh migrate, its client, has exited: finish() waits for that.
            if not self.running() or state(self.domain) != "running":
                return self.finish()
            raise

    def target_info(self) -> MigrationInfo:
        """The destination's side: libvirt resumes it before `virsh migrate` exits, so it
        has loaded once virsh succeeded and the domain runs there."""
        if self.running():
            return MigrationInfo(status="active")
        final = self.finish()
        if final.status == "completed" and state(self.domain, uri=self.dest_uri) != "running":
            return MigrationInfo(status="active")
        return MigrationInfo(status=final.status, error=final.error)

    def finish(self) -> MigrationInfo:
        """Once `virsh migrate` exited: how it ended, from the source's completed job."""
        if self.final is None:
            assert self.process is not None
            code = self.process.wait(MIGRATE_TIMEOUT_S)
            said = self.out.read_text(errors="replace").strip()
            try:
                jobinfo = virsh("domjobinfo", "--completed", self.domain)
            except VirshError as err:
                jobinfo, said = "", f"{said}; domjobinfo --completed: {err}"
            info = completed_info(jobinfo, code == 0, None if code == 0 else said)
            self.final = MigrationInfo(
                info.status,
                info.total_ms,
                info.downtime_ms,
                info.setup_ms,
                device_bytes_read(self.trace()),
                info.ram,
                info.error,
            )
        return self.final

    def allow_switchover(self) -> None:
        """libvirt's two knobs, which it takes during the job. Not QEMU's
        avail-switchover-bandwidth, which the plain run also lifts: qemu-monitor-command
        would wait for the migration's end; with 20 s allowed the switchover comes anyway."""
        knobs = (
            ("migrate-setspeed", str(SWITCHOVER_MIB_S)),
            ("migrate-setmaxdowntime", str(SWITCHOVER_PARAMETERS["downtime-limit"])),
        )
        for command, value in knobs:
            try:
                virsh(command, self.domain, value)
            except VirshError:
                # The first knob may already have let it finish: the source then no longer
                # runs ("Requested operation is not valid: domain is not running").
                if state(self.domain) == "running":
                    raise
                return

    def wait_for(self, done: Callable[[MigrationInfo], bool], timeout: float) -> MigrationInfo:
        deadline = time.monotonic() + timeout
        while True:
            info = self.info()
            if done(info) or (info.status in FINISHED and not self.running()):
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"migration still {info.status} after {timeout:.0f} s: {info}")
            self._pump(JOBINFO_POLL_S)

    def _pump(self, seconds: float) -> None:
        if self.running():
            with contextlib.suppress(Exception):  # the source QEMU may be gone at any time
                self.pump()
        time.sleep(seconds)

    def abort(self) -> None:
        if self.running():
            with contextlib.suppress(VirshError):
                virsh("domjobabort", self.domain)
            assert self.process is not None
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


# -- the run ------------------------------------------------------------------------------


@dataclass
class Side:
    qemu: LibvirtQemu
    qtest: QtestSocket
    trace_log: Path


def _side(workdir: Path, name: str) -> tuple[Path, Path]:
    directory = side_dir(workdir, name)  # the session user's QEMU writes the target's
    return directory / QTEST_SOCKET, directory / TRACE_LOG


def _scenario(side: Side, uuid: str, group: str) -> Scenario:
    client = side.qtest.client
    assert client is not None
    return qtest_scenario(client, side.qemu, uuid, group, mdev_alias(0))


def check_source_ended(m: MigrationRun, source: LibvirtQemu, pid: int) -> None:
    """libvirt ends the source QEMU once the destination runs: the domain is shut off, its
    QEMU gone, and no page the source device pinned stays pinned."""
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists():
        expect(time.monotonic() < deadline, f"source QEMU {pid} still runs 30 s after migrating")
        time.sleep(POLL_S)
    equal(state(source.domain), "shut off", "the source domain after the migration")
    pins_settle(m, 0, "pins held once libvirt ended the source QEMU")


@dataclass
class Setup:
    """What run_virsh_migration made, for its cleanup whatever broke."""

    workdir: Path
    daemon: SessionDaemon
    mdevs: list[str] = field(default_factory=list)
    sockets: list[QtestSocket] = field(default_factory=list)
    migration: LibvirtMigration | None = None
    defined: bool = False

    def prepare(
        self, seed: int, report: dict[str, Any]
    ) -> tuple[MigrationRun, Callable[[MigrationRun], None]]:
        """Both mdevs, the session daemon, the running source domain (driven through qtest)
        and the destination's XML: the checks' MigrationRun and their last check."""
        workdir = self.workdir
        firmware = halting_firmware(workdir / "halt.bin")
        firmware.chmod(0o644)
        source_uuid, source_group = create_mdev(c.SMALL)
        self.mdevs.append(source_uuid)  # removed by cleanup() even if the next one fails
        target_uuid, target_group = create_mdev(c.SMALL)
        self.mdevs.append(target_uuid)
        report["mdevs"] = {"source": source_uuid, "target": target_uuid, "type": c.SMALL.type_id}
        self.daemon.start()
        self.daemon.lend_group(target_group)
        report["session"] = {"uri": self.daemon.uri, "host_uuid": self.daemon.host_uuid}

        source_socket, source_trace = _side(workdir, "source")
        target_socket, target_trace = _side(workdir, "target")
        source = Side(LibvirtQemu(DOMAIN, source_trace), QtestSocket(source_socket), source_trace)
        self.sockets.append(source.qtest)
        xml = workdir / "source.xml"
        xml.write_text(migrating_domain(source_uuid, firmware, source_socket, source_trace))
        virsh("define", str(xml))
        self.defined = True
        virsh("start", DOMAIN)
        source.qtest.accept(alive(source.qemu))
        source_pid = source.qemu.pid()

        target_qemu = self.daemon.qemu(DOMAIN, target_trace)
        target = Side(target_qemu, QtestSocket(target_socket), target_trace)
        self.sockets.append(target.qtest)
        dest = workdir / "destination.xml"
        replace = {str(source_socket): str(target_socket), str(source_trace): str(target_trace)}
        migratable = virsh("dumpxml", "--migratable", DOMAIN)
        dest.write_text(destination_xml(migratable, {source_uuid: target_uuid}, replace))
        scenario = _scenario(source, source_uuid, source_group)
        client = source.qtest.client
        assert client is not None
        self.migration = LibvirtMigration(
            DOMAIN,
            self.daemon.uri,
            dest,
            source.qemu.trace,
            workdir / "virsh-migrate.out",
            pump=client.poll,
        )

        def target_machine() -> Scenario:
            target.qtest.accept(alive(target.qemu))
            on_target = _scenario(target, target_uuid, target_group)
            found = scenario.dev
            on_target.device = Probed(found.bdf, found.vendor, found.device, dict(found.bars))
            on_target.regs = Regs(on_target.machine, found.bar(0).address)
            return on_target

        run = MigrationRun(
            source=scenario,
            migration=self.migration,
            target_machine=target_machine,
            quit_source=lambda: None,  # libvirt ends it
            rng=random.Random(seed),
        )
        return run, lambda m: check_source_ended(m, source.qemu, source_pid)

    def cleanup(self, report: dict[str, Any]) -> None:
        """Every step runs whatever the one before hit; report["cleanup"] lists what failed."""
        problems: list[str] = []
        if self.migration is not None:
            attempt(problems, "abort virsh migrate", self.migration.abort)
            with contextlib.suppress(OSError):
                report["virsh_migrate"] = tail(self.migration.out.read_text(errors="replace"), 5)
            report["virsh_migrate_begin_s"] = self.migration.begin_s
        for name in ("source", "target"):
            with contextlib.suppress(OSError):
                text = (self.workdir / name / TRACE_LOG).read_text(errors="replace")
                report[f"trace_tail_{name}"] = tail(text, 20)
        report["libvirt_log_source"] = tail(LibvirtQemu(DOMAIN).log(), 10)
        report["libvirt_log_target"] = tail(self.daemon.qemu(DOMAIN, Path()).log(), 10)
        attempt(
            problems,
            "destroy the domains",
            lambda: problems.extend(_cleanup(self.daemon, self.defined)),
        )
        for qtest in self.sockets:
            attempt(problems, f"close {qtest.path}", qtest.close)
        attempt(problems, "stop the session libvirtd", lambda: problems.extend(self.daemon.close()))
        report["session_daemon_log"] = self.daemon.log_tail()
        for uuid in self.mdevs:
            attempt(problems, f"remove mdev {uuid}", functools.partial(remove_mdev, uuid))
        report["cleanup"] = problems


def run_virsh_migration(workdir: Path, seed: int) -> dict[str, Any]:
    """The checks of migration_checks through `virsh migrate`; a JSON-able report. Never
    raises for a failed check; a failure to set up is reported under "setup"."""
    report: dict[str, Any] = {"variant": "virsh-migrate", "qemu_l1": qemu_version()}
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    setup = Setup(workdir, SessionDaemon(workdir / "session"))
    try:
        report["libvirt"] = virsh("version").strip().splitlines()
        report["domain_type"] = "qemu"
        run, source_ended = setup.prepare(seed, report)
        report["seconds_setup"] = round(time.monotonic() - started, 2)
        results = run_migration_checks(run, source_ended)
        report["results"] = results.results
        report["seconds"] = results.seconds
        report["numbers"] = run.numbers
        report["numbers"]["device_state_counted_from"] = "QEMU trace vfio_save_block"
    except Exception:
        report["setup"] = traceback.format_exc()
        report.setdefault("results", Results().results)
    finally:
        setup.cleanup(report)
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report


def _cleanup(daemon: SessionDaemon, defined: bool) -> list[str]:
    """Both daemons' domains destroyed, the source's undefined; what failed other than
    "not running" or "not found"."""
    problems = []
    if daemon.process is not None and daemon.process.poll() is None:
        with contextlib.suppress(VirshError):
            virsh("destroy", DOMAIN, uri=daemon.uri)
    if defined:
        with contextlib.suppress(VirshError):
            virsh("destroy", DOMAIN)
        try:
            virsh("undefine", DOMAIN)
        except VirshError as err:
            problems.append(str(err))
    return problems
