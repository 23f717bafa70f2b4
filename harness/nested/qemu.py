# SPDX-License-Identifier: MIT
"""L1's QEMU: its command line (pure) and the running process with its sockets.

Every socket is created by us and listened on before QEMU starts; QEMU connects to each as a
client (`-chardev socket,path=...` without server=on), as QEMU's own qtest library does: no
polling for sockets to appear, and a QEMU that dies during start-up is noticed at once.

Debian's QEMU 7.2 is built without the qtest accelerator (`-accel help` lists tcg and kvm
only), so the qtest variant uses TCG with `-S`: the vCPU never runs a single instruction (no
firmware, no BAR assignment: we do that), while the qtest server, device models, VFIO's
memory listener and interrupt eventfds all run in QEMU's main loop as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.core.closing import Closing
from harness.qemu.qmp import QmpClient, QmpError
from harness.qemu.qtest import QtestClient

QEMU_BINARY = "qemu-system-x86_64"
TRACE_EVENTS = ("vfio_*",)  # QEMU's own account of the VFIO API calls it makes (step 1)
VFIO_DEVICE_ID = "hmdev"
IVSHMEM_ID = "unmapme"
ACCEPT_TIMEOUT_S = 60.0
QUIT_TIMEOUT_S = 30.0

Mode = Literal["qtest", "boot"]


@dataclass(frozen=True)
class L1Spec:
    """What L1's QEMU runs. Paths are in L1."""

    mdev: str  # /sys/bus/mdev/devices/<uuid>
    workdir: Path
    mode: Mode
    memory_mib: int = 128
    # A RAM region on a PCI BAR (ivshmem-plain on memory-backend-ram): QEMU DMA-maps it while
    # the BAR decodes and unmaps it when decoding stops, which is how step 4 makes QEMU unmap
    # memory the device keeps pinned. 0: none (ivshmem blocks migration).
    ivshmem_bytes: int = 1 << 20
    vfio_options: Sequence[str] = ()  # more vfio-pci properties, "enable-migration=on"
    # qtest mode: -S, so the vCPU never runs. False with `bios` set to a firmware that only
    # halts (migration.halting_firmware): the machine runs, as a migrating guest does, and
    # still nothing but us touches the device.
    paused: bool = True
    bios: Path | None = None
    kernel: Path | None = None  # boot mode: L2's kernel, initramfs and command line
    initrd: Path | None = None
    append: str = ""
    trace_events: Sequence[str] = TRACE_EVENTS
    qemu_binary: str = QEMU_BINARY
    extra_args: Sequence[str] = field(default_factory=tuple)
    accelerator: Literal["kvm", "tcg"] = "tcg"

    @property
    def qtest_socket(self) -> Path:
        return self.workdir / "qtest.sock"

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / "qmp.sock"

    @property
    def serial_socket(self) -> Path:
        return self.workdir / "serial.sock"

    @property
    def trace_log(self) -> Path:
        return self.workdir / "trace.log"

    @property
    def qtest_log(self) -> Path:
        return self.workdir / "qtest.log"

    @property
    def stderr_log(self) -> Path:
        return self.workdir / "qemu.stderr"


def qemu_command(spec: L1Spec) -> list[str]:
    """L1's QEMU argv for `spec`."""
    accel = ["-accel", "kvm", "-cpu", "host"] if spec.accelerator == "kvm" else ["-accel", "tcg"]
    argv = [spec.qemu_binary, "-machine", "q35", *accel, "-smp", "1"]
    argv += ["-m", f"{spec.memory_mib}M", "-nodefaults", "-no-user-config", "-display", "none"]
    argv += [
        "-chardev",
        f"socket,id=qmp,path={spec.qmp_socket}",
        "-mon",
        "chardev=qmp,mode=control",
    ]
    if spec.bios is not None:
        argv += ["-bios", str(spec.bios)]
    if spec.mode == "qtest":
        if spec.paused:
            argv += ["-S"]
        # `-qtest unix:PATH` connects to PATH as a client (QEMU names that chardev "qtest"
        # itself; `-qtest chardev:NAME` only works for NAME "qtest").
        argv += ["-qtest", f"unix:{spec.qtest_socket}"]
        argv += ["-qtest-log", str(spec.qtest_log)]
    else:
        if spec.kernel is None or spec.initrd is None:
            raise ValueError("boot mode needs an L2 kernel and initramfs")
        argv += ["-kernel", str(spec.kernel), "-initrd", str(spec.initrd)]
        argv += ["-append", spec.append, "-no-reboot"]
        argv += ["-chardev", f"socket,id=serial,path={spec.serial_socket}"]
        argv += ["-serial", "chardev:serial"]
    vfio = ",".join([f"vfio-pci,sysfsdev={spec.mdev},id={VFIO_DEVICE_ID}", *spec.vfio_options])
    argv += ["-device", vfio]
    if spec.ivshmem_bytes:
        argv += ["-object", f"memory-backend-ram,id={IVSHMEM_ID}-mem,size={spec.ivshmem_bytes}"]
        argv += ["-device", f"ivshmem-plain,memdev={IVSHMEM_ID}-mem,id={IVSHMEM_ID}"]
    for event in spec.trace_events:
        argv += ["-trace", f"enable={event}"]
    argv += ["-D", str(spec.trace_log)]
    argv += list(spec.extra_args)
    return argv


def l1_accelerator(
    dev_kvm: str = "/dev/kvm", cpuinfo: str = "/proc/cpuinfo"
) -> Literal["kvm", "tcg"]:
    """kvm when this machine (L1) can run KVM guests itself, i.e. the host gave it nested
    virtualization: /dev/kvm usable and a vmx/svm flag; else tcg (the same rule as the host's)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            flags = handle.read()
    except OSError:
        return "tcg"
    usable = os.access(dev_kvm, os.R_OK | os.W_OK)
    return "kvm" if usable and re.search(r"\b(?:vmx|svm)\b", flags) else "tcg"


def qemu_version(binary: str = QEMU_BINARY) -> str:
    """First line of `qemu --version`, e.g. 'QEMU emulator version 7.2.22 (Debian ...)'."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0].strip()


def open_files(pid: int) -> list[str]:
    """What a process's file descriptors point at (/proc/PID/fd), in descriptor order."""
    fds = Path(f"/proc/{pid}/fd")
    found = []
    for entry in sorted(fds.iterdir(), key=lambda p: int(p.name)):
        with contextlib.suppress(OSError):  # closed meanwhile
            found.append(os.readlink(entry))
    return found


def _listen(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    return listener


class L1Qemu(Closing):
    """A running L1 QEMU with its QMP (and qtest, or serial) connection."""

    def __init__(self, spec: L1Spec) -> None:
        self.spec = spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        self.argv = qemu_command(spec)
        self.qtest: QtestClient | None = None
        self.serial: socket.socket | None = None
        listeners = {"qmp": _listen(spec.qmp_socket)}
        if spec.mode == "qtest":
            listeners["qtest"] = _listen(spec.qtest_socket)
        else:
            listeners["serial"] = _listen(spec.serial_socket)
        self.started = time.monotonic()
        with open(spec.stderr_log, "wb") as stderr:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        try:
            accepted = {name: self._accept(name, sock) for name, sock in listeners.items()}
            # QEMU connects to its chardevs in command-line order, but answers QMP only once
            # the machine is created; the greeting wait is inside QmpClient.
            self.qmp = QmpClient(accepted["qmp"], alive=self.why_gone)
            if "qtest" in accepted:
                self.qtest = QtestClient(accepted["qtest"], alive=self.why_gone)
            self.serial = accepted.get("serial")
        except BaseException:
            self.kill()
            raise
        finally:
            for sock in listeners.values():
                sock.close()

    def _accept(self, name: str, listener: socket.socket) -> socket.socket:
        deadline = time.monotonic() + ACCEPT_TIMEOUT_S
        listener.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                gone = self.why_gone()
                if gone:
                    raise RuntimeError(
                        f"L1 QEMU {gone} before connecting its {name} socket"
                    ) from None
                continue
            conn.settimeout(None)
            return conn
        raise RuntimeError(f"L1 QEMU did not connect its {name} socket in {ACCEPT_TIMEOUT_S} s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def why_gone(self) -> str | None:
        """None while QEMU runs; else how it ended, with the end of its stderr."""
        code = self.process.poll()
        if code is None:
            return None
        return f"exited with status {code}; stderr: {self.stderr_tail()!r}"

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.spec.stderr_log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def trace(self) -> str:
        """The trace log so far (QEMU's log backend flushes every event)."""
        try:
            return self.spec.trace_log.read_text(errors="replace")
        except OSError:
            return ""

    def open_files(self) -> list[str]:
        return open_files(self.pid)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(QUIT_TIMEOUT_S)

    def close(self) -> None:
        """Quit through QMP (QEMU closes the device: the vendor driver's release runs), else
        kill."""
        if self.process.poll() is None:
            with contextlib.suppress(QmpError, OSError):
                self.qmp.execute("quit")
            try:
                self.process.wait(QUIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        for conn in (self.qtest, self.serial, self.qmp):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
