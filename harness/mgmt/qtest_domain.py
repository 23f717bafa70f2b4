# SPDX-License-Identifier: MIT
"""A libvirt domain whose guest driver is qtest: our mdev on pcie.0 of a q35 machine that
runs a firmware which only halts, QEMU connecting to a qtest socket we listen on, and QEMU's
VFIO trace in a file. libvirt manages the QEMU (its XML, its user, its cgroup and sandbox);
only the test touches the device.

    directory = side_dir(workdir, "source")          # libvirt's QEMU user writes there
    listener = QtestSocket(directory / QTEST_SOCKET)
    xml.write_text(qtest_domain(NAME, uuid, firmware, listener.path, directory / TRACE_LOG))
    virsh("define", str(xml))
    virsh("start", NAME)
    scenario = qtest_scenario(listener.accept(alive(qemu)), qemu, uuid, group, alias)

Type 'qemu' (TCG): under KVM an MSI goes to KVM's irqchip and never reaches the RAM where
qtest looks for it. The mdev sits on pcie.0: no firmware assigns bus numbers behind root
ports, and qtest's PCI scan looks at bus 0.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from harness.mgmt.domain_xml import DomainSpec, domain_xml
from harness.mgmt.libvirt_qemu import LibvirtQemu
from harness.nested.qtest_machine import QtestMachine
from harness.nested.scenario import Scenario
from harness.qemu.qtest import QtestClient
from harness.refdev import contract as c

MEMORY_MIB = 128
DMA_LENGTH = 3 * 4096 + 123
SLOT = 5  # the mdev's slot on pcie.0
ACCEPT_S = 60.0
QTEST_SOCKET = "qtest.sock"
TRACE_LOG = "trace.log"


def qtest_domain(
    name: str,
    uuid: str,
    firmware: Path,
    qtest_socket: Path,
    trace_log: Path,
    hostdev_properties: Mapping[str, str] | None = None,
    shmem_mib: int = 0,
) -> str:
    """The domain's XML: `hostdev_properties` are vfio-pci properties libvirt has no XML for
    (`enable-migration`); `shmem_mib`, an ivshmem-plain device's memory (it blocks
    migration)."""
    spec = DomainSpec(
        name,
        "qemu",
        memory_mib=MEMORY_MIB,
        mdevs=(uuid,),
        spare_root_ports=0,
        fixed_slot=SLOT,
        loader=str(firmware),
        hostdev_properties=dict(hostdev_properties or {}),
        qemu_args=qtest_args(qtest_socket, trace_log),
        shmem_mib=shmem_mib,
    )
    return domain_xml(spec)


def qtest_args(qtest_socket: Path, trace_log: Path) -> tuple[str, ...]:
    # -qtest-log: else QEMU logs every qtest message to stderr, libvirt's domain log.
    qtest = ("-qtest", f"unix:{qtest_socket}", "-qtest-log", "/dev/null")
    return (*qtest, "-trace", "enable=vfio_*", "-D", str(trace_log))


def side_dir(workdir: Path, name: str) -> Path:
    """A directory for one QEMU's qtest socket and trace, which libvirt's QEMU user (not
    root) writes into."""
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o777)
    return directory


class QtestSocket:
    """A socket QEMU's `-qtest unix:PATH` connects to, which its user (not root) may use."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        path.chmod(0o777)
        self.listener.listen(1)
        self.client: QtestClient | None = None

    def accept(self, alive: Callable[[], str | None]) -> QtestClient:
        """QEMU connected while starting (the backlog took it): take the connection."""
        self.listener.settimeout(ACCEPT_S)
        try:
            conn, _ = self.listener.accept()
        except TimeoutError:
            raise RuntimeError(f"no QEMU connected to {self.path} in {ACCEPT_S:.0f} s") from None
        conn.settimeout(None)
        self.client = QtestClient(conn, alive=alive)
        return self.client

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(OSError):
                self.client.close()
        self.listener.close()


def alive(qemu: LibvirtQemu) -> Callable[[], str | None]:
    """For QtestClient: why libvirt's QEMU is gone, or None while it runs."""

    def why_gone() -> str | None:
        try:
            pid = qemu.pid()
        except (OSError, ValueError):
            return f"the QEMU of domain {qemu.domain} is gone (no pid file)"
        return None if Path(f"/proc/{pid}").exists() else f"QEMU {pid} of {qemu.domain} is gone"

    return why_gone


def qtest_scenario(
    client: QtestClient, qemu: LibvirtQemu, uuid: str, group: str, qdev_id: str = ""
) -> Scenario:
    """The nested steps' Scenario on such a domain (a SMALL mdev); `qdev_id`: libvirt's
    alias of the hostdev, QEMU's id of the device."""
    machine = QtestMachine(client, MEMORY_MIB << 20)
    scenario = Scenario(machine, qemu, uuid, group, c.SMALL.mem_size, DMA_LENGTH)
    if qdev_id:
        scenario.qdev_id = qdev_id
    return scenario
