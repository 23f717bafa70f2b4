# SPDX-License-Identifier: MIT
"""Disposable VMs: cold-boot an image, or restore a saved, already-booted one; throw it away.

This composes the pieces: accelerator choice, a locked run directory (overlay, console log,
QMP socket, run key), a reserved forwarding port, a watchdog that kills QEMU if this process
dies, the console watched for panics while SSH is probed, and a close() that always kills QEMU
and deletes the run directory.

Cold boot and restore share one QEMU command line (see `_spec`): a saved state can only be
loaded by a QEMU with the same devices, which is also why the state cache key hashes that
command line (saved_state.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.core.cache import cache_dir
from harness.core.closing import Closing
from harness.core.progress import Progress
from harness.firmware import Firmware
from harness.images.build import BuiltImage
from harness.qemu.qmp import QmpClient
from harness.ssh.keys import RunKey, generate_run_key
from harness.ssh.session import SshSession, wait_for_ssh
from harness.vm.accel import Accelerator, choose_accelerator
from harness.vm.console import VerdictKind
from harness.vm.console_watch import ConsoleWatch
from harness.vm.overlay import create_overlay
from harness.vm.ports import reserve_port
from harness.vm.qemu_cmdline import VmSpec, build_qemu_command
from harness.vm.run_dir import RunDir, sweep_stale_runs
from harness.vm.uefi import FIRMWARE_BOOT_S, firmware_drives, prepare_firmware_files
from harness.vm.watchdog import Watchdog

# Calibrated for KVM; Accelerator.timeout_scale stretches them for TCG.
BOOT_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
VFIO_MODULES = ("vfio", "vfio_iommu_type1", "mdev")
# A VM generation ID device: a restored guest sees a new ID and reseeds its RNG (Linux's
# vmgenid driver, built into all our kernels), so restored VMs never share random numbers.
VMGENID_ARGS = ("-device", "vmgenid,guid=auto")


class BootError(RuntimeError):
    """The guest did not come up; the message carries the console's tail."""

    def __init__(self, message: str, *, early_panic: bool = False) -> None:
        super().__init__(message)
        self.early_panic = early_panic  # the kernel panicked before starting any user space


# The kernel's line when it starts the initrd's init: a panic before it happened in the kernel
# alone, before anything of ours ran.
USERSPACE_STARTED = "Run /init as init process"


@dataclass(frozen=True)
class BootTimes:
    qemu_start: float  # monotonic
    ssh_ready: float
    how: str = "boot"  # "boot" (cold) or "restore" (from a saved state)

    @property
    def boot_to_ready_s(self) -> float:
        return self.ssh_ready - self.qemu_start


class GuestKernel(Protocol):
    """A kernel to boot instead of the image's own (harness.kernel.custom.KernelBundle)."""

    @property
    def label(self) -> str: ...
    @property
    def kernel(self) -> Path: ...
    @property
    def initrd(self) -> Path | None: ...
    @property
    def extra_disks(self) -> tuple[Path, ...]: ...
    @property
    def release(self) -> str: ...
    @property
    def kernel_params(self) -> Mapping[str, str]: ...
    @property
    def config(self) -> Path | None: ...


@dataclass(frozen=True)
class GuestMachine:
    """What decides the machine a guest runs in, apart from per-VM paths and ports."""

    image: BuiltImage  # the root filesystem, and the kernel unless `kernel` is given
    accelerator: Accelerator
    memory_mib: int = 1024
    smp: int = 2
    kernel: GuestKernel | None = None
    firmware: Firmware = Firmware.DIRECT
    mok: tuple[Path, ...] = ()  # certificates for shim's MokList (Secure Boot)

    @property
    def label(self) -> str:
        label = self.image.manifest.name
        if self.kernel is not None:
            label += f"+{self.kernel.label}"
        if self.firmware.uses_ovmf:
            label += f"+{self.firmware}"
        if self.mok:  # states of different MokLists must not replace each other
            digest = hashlib.sha256(b"".join(p.read_bytes() for p in self.mok)).hexdigest()
            label += f"-mok{digest[:8]}"
        return label

    @property
    def kernel_release(self) -> str:
        return self.kernel.release if self.kernel is not None else self.image.kernel_release


def runs_dir() -> Path:
    """Run directories live here; each is deleted when its VM closes."""
    return cache_dir("runs")


def new_run_dir() -> RunDir:
    # Every launch first clears what crashed runs (watchdog included) left behind.
    sweep_stale_runs(runs_dir())
    return RunDir.create(runs_dir())


def authkey_param(public_line: str) -> str:
    return base64.b64encode(public_line.encode()).decode()


def guest_spec(
    machine: GuestMachine,
    run_dir: Path,
    disk: Path,
    ssh_port: int,
    authorized_key: str,
    incoming: str | None = None,
) -> VmSpec:
    """The one VmSpec shape used for cold boots, saved states and restores alike."""
    image, custom = machine.image, machine.kernel
    params = dict(custom.kernel_params) if custom is not None else {}
    params["harness.authkey"] = authkey_param(authorized_key)  # ours: a bundle cannot override
    return VmSpec(
        kernel=custom.kernel if custom is not None else image.vmlinux,
        initrd=custom.initrd if custom is not None else image.initrd,
        extra_disks=custom.extra_disks if custom is not None else (),
        disk=disk,
        console_log=run_dir / "console.log",
        qmp_socket=run_dir / "qmp.sock",
        ssh_port=ssh_port,
        accelerator=machine.accelerator,
        memory_mib=machine.memory_mib,
        smp=machine.smp,
        kernel_params=params,
        incoming=incoming,
        pidfile=run_dir / "qemu.pid",
        name=f"vfio-harness-{machine.label}",
        extra_args=VMGENID_ARGS,
        firmware=firmware_drives(machine.firmware, run_dir, custom_kernel=custom is not None),
    )


class Vm(Closing):
    """A running guest reachable over SSH. close() kills QEMU and deletes the run directory."""

    def __init__(
        self,
        machine: GuestMachine,
        process: subprocess.Popen[bytes],
        run: RunDir,
        watchdog: Watchdog,
        spec: VmSpec,
        key: RunKey,
        console: ConsoleWatch,
        qmp: QmpClient,
        ssh: SshSession,
        times: BootTimes,
    ) -> None:
        self.machine = machine
        self.process = process
        self.run_dir = run.path
        self.spec = spec
        self.key = key
        self.console = console
        self.qmp = qmp
        self.ssh = ssh
        self.times = times
        self._run = run
        self._watchdog = watchdog
        self._closed = False

    @property
    def accelerator(self) -> Accelerator:
        return self.machine.accelerator

    @property
    def image(self) -> BuiltImage:
        return self.machine.image

    @property
    def ssh_port(self) -> int:
        return self.spec.ssh_port

    def run(self, command: str, timeout: float = 60.0, *, check: bool = True) -> str:
        """Run a shell command in the guest; return its stdout."""
        return self.ssh.run(command, timeout * self.accelerator.timeout_scale, check=check).stdout

    def alive(self) -> bool:
        return self.process.poll() is None

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
        keep_console_in(os.environ.get(CONSOLE_DIR_ENV), self)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self._watchdog.release()
        self._run.release()


# `vfio-harness run` sets it: every VM's console log is kept there when the VM closes.
CONSOLE_DIR_ENV = "HARNESS_CONSOLE_DIR"


def keep_console_in(directory: str | None, vm: Vm) -> None:
    if not directory:
        return
    source = vm.spec.console_log
    with contextlib.suppress(OSError):
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, Path(directory) / f"{vm.machine.label}-{vm.run_dir.name}.log")


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait briefly for QEMU to exit, then kill its whole process group."""
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Launched:
    """A QEMU just started, with its watchdog and QMP session."""

    spec: VmSpec
    process: subprocess.Popen[bytes]
    watchdog: Watchdog
    qmp: QmpClient
    console: ConsoleWatch
    started: float


def launch(machine: GuestMachine, run: RunDir, disk: Path, key: RunKey, incoming: str | None,
           progress: Progress, varstore: Path | None = None) -> Launched:  # fmt: skip
    """Start QEMU and its watchdog; return once QMP answers (networking is then set up).
    `varstore`: the UEFI variable store to start from (a saved state's)."""
    accel = machine.accelerator
    with reserve_port() as port:
        spec = guest_spec(machine, run.path, disk, port.port, key.public_line, incoming)
        prepare_firmware_files(spec, machine.firmware, machine.image, machine.mok, varstore)
        command = build_qemu_command(spec)
        (run.path / "qemu.cmdline").write_text(shlex.join(command) + "\n")
        started = time.monotonic()
        with open(run.path / "qemu.log", "wb") as qemu_log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=qemu_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our own process group: killpg reaches all of it
            )
        try:
            assert run.lock_fd is not None
            watchdog = Watchdog.start(process.pid, run.path, run.lock_fd)
        except BaseException:
            _kill(process)
            raise
        try:
            # QMP answers only after QEMU has set up networking, so the port is bound by then.
            qmp = QmpClient.connect(spec.qmp_socket, timeout=10 * accel.timeout_scale)
        except BaseException:
            _kill(process)
            watchdog.release()
            raise
    verb = "restoring" if incoming else "booting"
    progress(f"{machine.label}: QEMU {verb} ({accel.name}), waiting for SSH")
    return Launched(spec, process, watchdog, qmp, ConsoleWatch(spec.console_log), started)


def wait_until_ready(
    machine: GuestMachine,
    launched: Launched,
    identity: RunKey,
    *,
    first_probe_timeout: float = 1.0,
) -> SshSession:
    """Probe SSH until it answers; a panic, a dead QEMU or the deadline raise BootError."""
    console, process = launched.console, launched.process

    def guest_failed() -> bool:
        console.poll()
        verdict = console.verdict
        if verdict.fatal or process.poll() is not None:
            early = verdict.kind == VerdictKind.PANIC and not any(
                USERSPACE_STARTED in line.text for line in console.lines
            )
            message = _boot_failure(machine, process, verdict.kind, console)
            raise BootError(message, early_panic=early)
        return False

    boot_s = BOOT_TIMEOUT_S + (FIRMWARE_BOOT_S if machine.firmware.uses_ovmf else 0.0)
    deadline = launched.started + boot_s * machine.accelerator.timeout_scale
    try:
        return wait_for_ssh(
            "127.0.0.1",
            launched.spec.ssh_port,
            deadline,
            identity=identity.pkey,
            host_key=machine.image.host_key,
            should_abort=guest_failed,
            guest_ready=lambda: console.verdict.ready,  # polled by guest_failed just before
            first_probe_timeout=first_probe_timeout,
        )
    except BootError:
        raise
    except Exception as exc:
        console.poll()
        raise BootError(f"{exc}\n{_console_tail(console)}") from None


def modules_check_command() -> str:
    """Prints the VFIO modules that are neither loaded nor built in (nothing when all are).

    A built-in module without parameters has no /sys/module entry; modules.builtin lists it.
    """
    return (
        "b=/lib/modules/$(uname -r)/modules.builtin; "
        f"for m in {' '.join(VFIO_MODULES)}; do "
        '[ -d /sys/module/$m ] || grep -qs "/$m\\.ko$" "$b" || echo $m; done;'
    )


def clock_sync_command() -> str:
    """Sets the guest's wall clock to the host's (a restored or paused guest lags behind)."""
    return f"date -u -s @{time.time():.3f} >/dev/null;"


def boot(
    image: BuiltImage,
    *,
    kernel: GuestKernel | None = None,
    accelerator: Accelerator | None = None,
    memory_mib: int = 1024,
    smp: int = 2,
    progress: Progress = lambda _line: None,
) -> Vm:
    """Cold-boot `image` (with `kernel`, if given) on a fresh overlay; return once SSH answers
    and the VFIO modules are loaded."""
    machine = GuestMachine(image, accelerator or choose_accelerator(), memory_mib, smp, kernel)
    return cold_boot(machine, progress)


def cold_boot(machine: GuestMachine, progress: Progress) -> Vm:
    """A cold boot. Under TCG, a Debian kernel that panics before any user space ran is booted
    once more: we have seen 7.2 panic that way about once in 60 TCG boots of the same image,
    an emulation flake that a real kernel bug would repeat. A custom kernel gets no retry."""
    retry = machine.kernel is None and machine.accelerator.name == "tcg"
    try:
        return _cold_boot_once(machine, progress)
    except BootError as exc:
        if not (retry and exc.early_panic):
            raise
        first = str(exc).splitlines()[0]
        progress(f"{machine.label}: early kernel panic under TCG ({first}); booting again")
        return _cold_boot_once(machine, progress)


def _cold_boot_once(machine: GuestMachine, progress: Progress) -> Vm:
    run = new_run_dir()
    launched: Launched | None = None
    try:
        key = generate_run_key(run.path)
        overlay = create_overlay(machine.image.rootfs, run.path)
        launched = launch(machine, run, overlay, key, None, progress)
        ssh = wait_until_ready(machine, launched, key)
        missing = ssh.run(modules_check_command(), 60 * machine.accelerator.timeout_scale)
        if missing.stdout.split():
            ssh.close()
            raise BootError(f"guest booted without the VFIO modules: {missing.stdout.split()}")
        ready = time.monotonic()
        vm = _vm(machine, launched, run, key, ssh, BootTimes(launched.started, ready, "boot"))
        progress(f"{machine.label}: ready in {vm.times.boot_to_ready_s:.1f} s (cold boot)")
        return vm
    except BaseException:
        abort_launch(run, launched)
        raise


def _vm(machine: GuestMachine, launched: Launched, run: RunDir, key: RunKey, ssh: SshSession,
        times: BootTimes) -> Vm:  # fmt: skip
    return Vm(machine, launched.process, run, launched.watchdog, launched.spec, key,
              launched.console, launched.qmp, ssh, times)  # fmt: skip


def abort_launch(run: RunDir, launched: Launched | None) -> None:
    """Undo a launch that did not produce a Vm: QEMU killed, directory gone, watchdog off."""
    if launched is not None:
        with contextlib.suppress(Exception):
            launched.qmp.close()
        _kill(launched.process)
        shutil.rmtree(run.path, ignore_errors=True)
        launched.watchdog.release()
    run.remove()


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# Console logs of guests that failed to start are kept (the run directory is not): the tail in
# the error rarely shows where a panic began.
KEPT_FAILED_CONSOLES = 20


def failed_consoles_dir() -> Path:
    return cache_dir("failed-consoles")


def keep_console(console: ConsoleWatch) -> Path | None:
    """Copy a failed guest's whole console log out of its run directory; drop old copies."""
    source = console.path
    if not source.is_file():
        return None
    kept = failed_consoles_dir()
    target = kept / f"{time.strftime('%Y%m%d-%H%M%S')}-{source.parent.name}.log"
    shutil.copyfile(source, target)
    for old in sorted(kept.glob("*.log"))[:-KEPT_FAILED_CONSOLES]:
        old.unlink(missing_ok=True)
    return target


def _console_tail(console: ConsoleWatch) -> str:
    kept = keep_console(console)
    where = f" (whole log: {kept})" if kept is not None else ""
    return f"console tail{where}:\n" + "\n".join(console.tail(40))


def _boot_failure(
    machine: GuestMachine, process: subprocess.Popen[bytes], kind: object, console: ConsoleWatch
) -> str:
    status = process.poll()
    what = f"QEMU exited with {status}" if status is not None else f"console shows {kind}"
    return f"{machine.label}: guest failed to start: {what}\n{_console_tail(console)}"
