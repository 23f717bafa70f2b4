# SPDX-License-Identifier: MIT
"""What a libvirt-managed QEMU says about itself (harness.nested's `QemuView`), asked through
libvirt where libvirt has a way (QMP via `qemu-monitor-command`), else from what libvirt
leaves on the host: its pid file, its per-domain log (QEMU's stderr) and /proc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.mgmt.virsh import URI, qmp
from harness.nested.qemu import open_files

RUN_DIR = Path("/run/libvirt/qemu")
LOG_DIR = Path("/var/log/libvirt/qemu")


@dataclass
class LibvirtQemu:
    domain: str
    trace_log: Path | None = None  # a `-D` file the domain's <qemu:commandline> asked for
    uri: str = URI  # the connection (daemon) that runs the domain
    run_dir: Path = RUN_DIR  # where that daemon keeps its pid files (a session's differ)
    log_dir: Path = LOG_DIR

    def pid(self) -> int:
        return int((self.run_dir / f"{self.domain}.pid").read_text().strip())

    def trace(self) -> str:
        if self.trace_log is None:
            return ""
        try:
            return self.trace_log.read_text(errors="replace")
        except OSError:
            return ""

    def open_files(self) -> list[str]:
        """What QEMU's descriptors point at. Paths are as QEMU sees them: libvirt gives it a
        private /dev, but the names of the VFIO nodes are the same there."""
        return open_files(self.pid())

    def query_pci(self) -> list[dict[str, Any]]:
        buses: list[dict[str, Any]] = qmp(self.domain, "query-pci", connection=self.uri)
        return buses

    def run_state(self) -> str:
        return str(qmp(self.domain, "query-status", connection=self.uri)["status"])

    def log(self) -> str:
        """libvirt's log of the domain: QEMU's command line, then its stderr."""
        try:
            return (self.log_dir / f"{self.domain}.log").read_text(errors="replace")
        except OSError:
            return ""

    def stderr(self) -> str:
        return "\n".join(self.log().splitlines()[-20:])
