# SPDX-License-Identifier: MIT
"""virsh, every call bounded, and what its errors mean; the system libvirt unless a call names
another connection (`uri=` for virsh, `connection=` for qmp).

    virsh("start", "hx-a")                          # stdout; VirshError on failure
    qmp("hx-a", "query-pci")                        # through libvirt's own QMP connection
    qmp("hx-a", "query-migrate", connection=other_daemon_uri)
    classify(err.message) is ErrorKind.IN_USE

libvirt is the only client of its QEMUs' monitors: `qemu-monitor-command` passes a QMP
command through that connection (libvirt marks the domain tainted "custom-monitor", which is
harmless here), so the checks see QEMU exactly as libvirt manages it.
"""

from __future__ import annotations

import enum
import json
import re
import subprocess
from collections.abc import Mapping
from typing import Any

URI = "qemu:///system"
TIMEOUT_S = 120.0  # a domain start under TCG in a TCG L1 takes seconds; this is a hang


class ErrorKind(enum.Enum):
    IN_USE = "in use"
    NOT_FOUND = "not found"
    TIMEOUT = "timed out"
    OTHER = "other"


_KINDS = (
    # libvirt's mdev bookkeeping: "mediated device /sys/bus/mdev/devices/U is in use by
    # driver QEMU, domain D"; QEMU's own, should libvirt let it through: "Device or resource
    # busy" from VFIO_GROUP_SET_CONTAINER.
    (ErrorKind.IN_USE, re.compile(r"\bin use\b|resource busy", re.I)),
    (ErrorKind.NOT_FOUND, re.compile(r"no such|not found|does not exist|failed to get", re.I)),
)
_HOLDER = re.compile(r"in use by driver \S+, domain (\S+)")


class VirshError(RuntimeError):
    def __init__(self, argv: list[str], status: int | None, message: str) -> None:
        super().__init__(argv, status, message)
        self.argv = argv
        self.status = status  # None: killed at the timeout
        self.message = message  # stderr, or the timeout

    def __str__(self) -> str:
        how = "timed out" if self.status is None else f"exited {self.status}"
        return f"`{' '.join(self.argv)}` {how}: {self.message.strip()}"

    @property
    def kind(self) -> ErrorKind:
        return ErrorKind.TIMEOUT if self.status is None else classify(self.message)


def classify(message: str) -> ErrorKind:
    for kind, pattern in _KINDS:
        if pattern.search(message):
            return kind
    return ErrorKind.OTHER


def holder(message: str) -> str | None:
    """The domain an in-use error names as holding the device (libvirt names it)."""
    found = _HOLDER.search(message)
    return found.group(1).rstrip(".") if found else None


def virsh(*args: str, timeout: float = TIMEOUT_S, uri: str = URI) -> str:
    argv = ["virsh", "-c", uri, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VirshError(argv, None, f"no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        raise VirshError(argv, done.returncode, done.stderr or done.stdout)
    return done.stdout


def qmp(
    domain: str,
    command: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    timeout: float = TIMEOUT_S,
    connection: str = URI,
) -> Any:
    """A QMP command's "return" value, through libvirt's monitor connection. `arguments` is
    a mapping, not keywords: QMP's own (`uri`, `timeout`) must not meet ours."""
    request: dict[str, Any] = {"execute": command}
    if arguments:
        request["arguments"] = dict(arguments)
    out = virsh(
        "qemu-monitor-command", domain, json.dumps(request), timeout=timeout, uri=connection
    )
    reply = json.loads(out)
    if "error" in reply:
        raise RuntimeError(f"QMP {command} on {domain}: {reply['error']}")
    return reply["return"]


def state(domain: str, uri: str = URI) -> str:
    """`virsh domstate`: "running", "paused", "shut off", ..."""
    return virsh("domstate", domain, uri=uri).strip()
