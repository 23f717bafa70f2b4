# SPDX-License-Identifier: MIT
"""Boot a built image in QEMU, wait until SSH answers, and throw the VM away afterwards.

This composes the pieces: accelerator choice, a private run directory (overlay, console log,
QMP socket, run key), a reserved forwarding port, the console watched for panics while SSH is
probed, and a teardown that always kills QEMU and deletes the run directory.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_dir
from harness.closing import Closing
from harness.vm.accel import Accelerator, choose_accelerator
from harness.vm.console_watch import ConsoleWatch
from harness.vm.images import BuiltImage
from harness.vm.overlay import create_overlay
from harness.vm.ports import reserve_port
from harness.vm.qemu_cmdline import VmSpec, build_qemu_command
from harness.vm.qmp import QmpClient
from harness.vm.ssh import SshSession, wait_for_ssh
from harness.vm.ssh_keys import generate_run_key

# Calibrated for KVM; Accelerator.timeout_scale stretches them for TCG.
BOOT_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "mdev")


class BootError(RuntimeError):
    """The guest did not come up; the message carries the console's tail."""


@dataclass(frozen=True)
class BootTimes:
    qemu_start: float  # monotonic
    ssh_ready: float

    @property
    def boot_to_ready_s(self) -> float:
        return self.ssh_ready - self.qemu_start


def runs_dir() -> Path:
    """Run directories live here; each is deleted when its VM closes."""
    return cache_dir("runs")


class Vm(Closing):
    """A booted guest reachable over SSH. close() kills QEMU and deletes the run directory."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        run_dir: Path,
        accelerator: Accelerator,
        console: ConsoleWatch,
        qmp: QmpClient,
        ssh: SshSession,
        times: BootTimes,
        image: BuiltImage,
    ) -> None:
        self.process = process
        self.run_dir = run_dir
        self.accelerator = accelerator
        self.console = console
        self.qmp = qmp
        self.ssh = ssh
        self.times = times
        self.image = image
        self._closed = False

    def run(self, command: str, timeout: float = 60.0, *, check: bool = True) -> str:
        """Run a shell command in the guest; return its stdout."""
        return self.ssh.run(command, timeout * self.accelerator.timeout_scale, check=check).stdout

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self.ssh.close()
        with contextlib.suppress(Exception):
            self.qmp.quit()
            self.qmp.close()
        stop_process(self.process, SHUTDOWN_TIMEOUT_S)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait briefly for QEMU to exit, then kill its whole process group."""
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _authkey_param(public_line: str) -> str:
    return base64.b64encode(public_line.encode()).decode()


def boot(
    image: BuiltImage,
    *,
    accelerator: Accelerator | None = None,
    memory_mib: int = 1024,
    smp: int = 2,
    progress: Callable[[str], None] = lambda _line: None,
) -> Vm:
    """Cold-boot `image` on a fresh overlay; return once SSH answers and VFIO modules are in."""
    accel = accelerator or choose_accelerator()
    run_dir = Path(tempfile.mkdtemp(prefix="vm-", dir=runs_dir()))
    process: subprocess.Popen[bytes] | None = None
    try:
        key = generate_run_key(run_dir)
        overlay = create_overlay(image.rootfs, run_dir)
        console_log = run_dir / "console.log"
        with reserve_port() as port:
            spec = VmSpec(
                kernel=image.vmlinux,
                initrd=image.initrd,
                disk=overlay,
                console_log=console_log,
                qmp_socket=run_dir / "qmp.sock",
                ssh_port=port.port,
                accelerator=accel,
                memory_mib=memory_mib,
                smp=smp,
                kernel_params={"harness.authkey": _authkey_param(key.public_line)},
                name=f"vfio-harness-{image.manifest.name}",
            )
            started = time.monotonic()
            with open(run_dir / "qemu.log", "wb") as qemu_log:
                process = subprocess.Popen(
                    build_qemu_command(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=qemu_log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # our own process group: killpg reaches all of it
                )
            # QMP answers only after QEMU has set up networking, so the port is bound by then.
            qmp = QmpClient.connect(spec.qmp_socket, timeout=10 * accel.timeout_scale)
        progress(f"{image.manifest.name}: QEMU started ({accel.name}), waiting for SSH")
        console = ConsoleWatch(console_log)
        running = process

        def guest_failed() -> bool:
            console.poll()
            verdict = console.verdict
            if verdict.fatal or running.poll() is not None:
                raise BootError(_boot_failure(image, running, verdict.kind, console))
            return False

        deadline = started + BOOT_TIMEOUT_S * accel.timeout_scale
        try:
            ssh = wait_for_ssh(
                "127.0.0.1",
                spec.ssh_port,
                deadline,
                identity=key.pkey,
                host_key=image.host_key,
                should_abort=guest_failed,
            )
        except BootError:
            raise
        except Exception as exc:
            console.poll()
            raise BootError(f"{exc}\n{_console_tail(console)}") from None
        ready = time.monotonic()
        vm = Vm(process, run_dir, accel, console, qmp, ssh, BootTimes(started, ready), image)
        missing = vm.run(
            " ".join(f"[ -d /sys/module/{m} ] || echo {m};" for m in VFIO_MODULES)
        ).split()
        if missing:
            vm.close()
            raise BootError(f"guest booted without the VFIO modules: {' '.join(missing)}")
        progress(f"{image.manifest.name}: ready in {vm.times.boot_to_ready_s:.1f} s")
        return vm
    except BaseException:
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _console_tail(console: ConsoleWatch) -> str:
    return "console tail:\n" + "\n".join(console.tail(40))


def _boot_failure(
    image: BuiltImage, process: subprocess.Popen[bytes], kind: object, console: ConsoleWatch
) -> str:
    status = process.poll()
    what = f"QEMU exited with {status}" if status is not None else f"console shows {kind}"
    return f"{image.manifest.name}: guest failed to boot: {what}\n{_console_tail(console)}"
