# SPDX-License-Identifier: MIT
"""VMs kept running by `vfio-harness vm boot`, found again by `vm ssh` and `vm list`.

A running VM's run directory gets `session.json` (port, key, pinned host key) and a
`known_hosts` for plain OpenSSH. A session is live while its run directory's lock is held
(by the `vm boot` process and the VM's watchdog), so a crashed `vm boot` never shows up as a
VM to connect to.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.vm.machine import Vm, runs_dir
from harness.vm.run_dir import LOCK_NAME, lock_is_free

SESSION_FILE = "session.json"


@dataclass(frozen=True)
class Session:
    name: str  # the run directory's name: what `vm ssh NAME` takes
    label: str
    kernel_release: str
    accelerator: str
    ssh_port: int
    key: str
    host_key: str
    run_dir: str

    @property
    def known_hosts(self) -> Path:
        return Path(self.run_dir) / "known_hosts"

    def openssh_command(self) -> str:
        return (
            f"ssh -i {self.key} -p {self.ssh_port} -o UserKnownHostsFile={self.known_hosts} "
            "-o IdentitiesOnly=yes root@127.0.0.1"
        )


def publish(vm: Vm) -> Session:
    """Record `vm` as a session others can connect to."""
    session = Session(
        name=vm.run_dir.name,
        label=vm.machine.label,
        kernel_release=vm.machine.kernel_release,
        accelerator=vm.accelerator.name,
        ssh_port=vm.ssh_port,
        key=str(vm.key.private_path),
        host_key=vm.image.host_key,
        run_dir=str(vm.run_dir),
    )
    session.known_hosts.write_text(f"[127.0.0.1]:{vm.ssh_port} {vm.image.host_key}\n")
    (vm.run_dir / SESSION_FILE).write_text(json.dumps(asdict(session), indent=2) + "\n")
    return session


def live_sessions(parent: Path | None = None) -> list[Session]:
    sessions = []
    for record in sorted((parent or runs_dir()).glob(f"*/{SESSION_FILE}")):
        lock = record.parent / LOCK_NAME
        if not lock.exists() or lock_is_free(lock):
            continue
        try:
            sessions.append(Session(**json.loads(record.read_text())))
        except (OSError, ValueError, TypeError):
            continue  # being written or removed right now
    return sessions


class SessionNotFoundError(LookupError):
    pass


def find_session(name: str | None, parent: Path | None = None) -> Session:
    """The live session called `name` (run directory name or label), or the only one."""
    sessions = live_sessions(parent)
    if not sessions:
        raise SessionNotFoundError("no running VM: start one with `vfio-harness vm boot`")
    if name is None:
        if len(sessions) > 1:
            names = ", ".join(f"{s.name} ({s.label})" for s in sessions)
            raise SessionNotFoundError(f"{len(sessions)} VMs are running ({names}): name one")
        return sessions[0]
    matches = [s for s in sessions if name in (s.name, s.label)]
    if len(matches) != 1:
        names = ", ".join(f"{s.name} ({s.label})" for s in sessions)
        problem = "no" if not matches else "more than one"
        raise SessionNotFoundError(f"{problem} running VM called {name!r}; running: {names}")
    return matches[0]
