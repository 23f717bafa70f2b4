# SPDX-License-Identifier: MIT
"""Saved, already-booted guests: restore one in about a second instead of booting for seven.

The first VM of a machine (image, accelerator, memory, CPUs) boots cold; once it is ready its
state is saved: QMP `stop`, `migrate` to a file, a copy of its disk overlay taken while QEMU
has the disk flushed and released, then `cont`, and that VM goes on serving its caller. Every
later VM is a new QEMU with the same command line started with `-incoming` from that file, on
a fresh overlay whose backing file is the saved disk, with its own forwarded port.

A restored guest would share the saved guest's RNG state, clock, and SSH key. Its VM
generation ID changes (machine.VMGENID_ARGS), so its kernel reseeds the RNG at once; the first
command over SSH sets the clock to the host's and installs a new per-VM key in authorized_keys.

States live in the cache under `states/<label>-<key>/`. The key hashes the exact QEMU command
line (with per-VM paths and port neutralised) and the QEMU binary's identity, so a changed
device list, kernel, image or QEMU never loads an incompatible state; a state that fails to
load anyway is discarded and the VM cold-booted, once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.core.cache import cache_dir
from harness.core.cached_build import file_sha256, prune
from harness.core.progress import Progress
from harness.firmware import Firmware
from harness.firmware.ovmf import find_ovmf
from harness.firmware.varstore import prepared_varstore
from harness.images.build import BuiltImage
from harness.qemu.qmp import QmpError
from harness.ssh.errors import SshError
from harness.ssh.keys import RUN_KEY_NAME, generate_run_key, load_run_key
from harness.ssh.session import SshSession
from harness.vm.accel import Accelerator, choose_accelerator
from harness.vm.machine import (
    BootError,
    BootTimes,
    GuestKernel,
    GuestMachine,
    Launched,
    Vm,
    abort_launch,
    clock_sync_command,
    cold_boot,
    guest_spec,
    launch,
    modules_check_command,
    new_run_dir,
    wait_until_ready,
)
from harness.vm.overlay import create_overlay
from harness.vm.qemu_cmdline import (
    VmSpec,
    build_qemu_command,
    incoming_from_file,
    kernel_command_line,
)

STATE_FORMAT = 1
STATE_FILE = "state"
DISK_FILE = "disk.qcow2"
VARSTORE_FILE = "vars.fd"  # a UEFI guest's variable store belongs to its state
META_FILE = "meta.json"
SAVE_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 10.0

Fresh = Literal["auto", "restore", "boot"]


class SavedStateError(RuntimeError):
    """Saving or restoring a state failed."""


@dataclass(frozen=True)
class SavedState:
    path: Path

    @property
    def state_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def disk(self) -> Path:
        return self.path / DISK_FILE

    @property
    def varstore(self) -> Path | None:
        """A UEFI guest's variable store as it was when saved (QEMU also carries the pflash
        contents in the state itself, and writes them back on load)."""
        path = self.path / VARSTORE_FILE
        return path if path.is_file() else None

    @property
    def key_path(self) -> Path:
        return self.path / RUN_KEY_NAME

    def meta(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.path / META_FILE).read_text())
        return loaded


def states_dir() -> Path:
    return cache_dir("states")


def state_key(machine: GuestMachine) -> str:
    """Hash of what a state's loader must reproduce: the QEMU command line and binary."""
    placeholder = Path("/vm")
    spec = guest_spec(machine, placeholder, placeholder / "disk", 1, "ssh-ed25519 AAAA saved")
    argv = build_qemu_command(spec)
    binary = shutil.which(argv[0])
    identity = "missing"
    if binary is not None:
        info = os.stat(binary)
        identity = f"{os.path.realpath(binary)}:{info.st_size}:{info.st_mtime_ns}"
    digest = hashlib.sha256()
    # The image directory too: with a kernel of its own (--kernel debug, a path) the command
    # line names that kernel, not the image whose disk the state was saved on.
    image = str(machine.image.directory)
    for part in (str(STATE_FORMAT), identity, image, *argv, *firmware_identity(machine, spec)):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:20]


def firmware_identity(machine: GuestMachine, spec: VmSpec) -> list[str]:
    """What a UEFI guest's state depends on that its QEMU command line no longer names (no
    -kernel, -initrd or -append): the image (its ESP is built from it), the kernel command
    line GRUB passed, the OVMF build, and the keys enrolled (a new MOK certificate must not
    restore a guest without it)."""
    if not machine.firmware.uses_ovmf:
        return []
    ovmf = find_ovmf(machine.firmware)
    varstore = prepared_varstore(machine.firmware, ovmf, machine.mok)
    return [
        str(machine.image.directory),
        kernel_command_line(spec),
        file_sha256(ovmf.code),
        file_sha256(varstore),
    ]


def state_path(machine: GuestMachine) -> Path:
    return states_dir() / f"{machine.label}-{state_key(machine)}"


def find_saved_state(machine: GuestMachine) -> SavedState | None:
    path = state_path(machine)
    return SavedState(path) if (path / META_FILE).is_file() else None


def discard(saved: SavedState) -> None:
    _discard_path(saved.path)


def _discard_path(path: Path) -> None:
    # Renamed first, so no other worker starts loading a half-deleted state.
    doomed = path.with_name(f".discarded-{path.name}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _discard_superseded(current: SavedState) -> None:
    """Drop older states of the same guest and machine size: a changed image, kernel, QEMU or
    device list gave them another key, and nothing will load them again."""
    mine = current.meta()
    same = ("label", "accelerator", "memory_mib", "smp")
    others = []
    for meta_file in states_dir().glob(f"{mine['label']}-*/{META_FILE}"):
        with contextlib.suppress(OSError, ValueError):
            meta = SavedState(meta_file.parent).meta()
            saved_at = meta.get("saved_at")
            if all(meta.get(k) == mine[k] for k in same):
                stamp = float(saved_at) if isinstance(saved_at, int | float) else 0.0
                others.append((stamp, meta_file.parent))
    # Each state's lock is `<name>.lock` beside it (not `.<name>.lock`): removed here.
    for old in prune(others, 0, current=current.path, remove=_discard_path):
        (old.parent / f"{old.name}.lock").unlink(missing_ok=True)


@contextlib.contextmanager
def _creation_lock(machine: GuestMachine) -> Iterator[None]:
    lock = states_dir() / f"{machine.label}-{state_key(machine)}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def save_state(vm: Vm, progress: Progress = lambda _line: None) -> SavedState:
    """Save `vm`'s state into the cache; `vm` keeps running (on a new SSH session)."""
    final = state_path(vm.machine)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=states_dir()))
    started = time.monotonic()
    try:
        # An open session would be saved half-open in the guest and in QEMU's slirp.
        vm.ssh.close()
        vm.qmp.stop()
        timeout = SAVE_TIMEOUT_S * vm.accelerator.timeout_scale
        vm.qmp.save_state(scratch / STATE_FILE, timeout=timeout)
        # Migration completion flushed the disk and QEMU released it until `cont`.
        shutil.copyfile(vm.spec.disk, scratch / DISK_FILE)
        if vm.spec.firmware is not None:
            shutil.copyfile(vm.spec.firmware.varstore, scratch / VARSTORE_FILE)
        shutil.copy2(vm.key.private_path, scratch / RUN_KEY_NAME)
        shutil.copy2(vm.key.public_path, scratch / f"{RUN_KEY_NAME}.pub")
        meta = {
            "format": STATE_FORMAT,
            "label": vm.machine.label,
            "accelerator": vm.accelerator.name,
            "memory_mib": vm.machine.memory_mib,
            "smp": vm.machine.smp,
            "saved_at": time.time(),
            "qemu": shlex.join(build_qemu_command(vm.spec)),
        }
        (scratch / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        scratch.rename(final)
        _discard_superseded(SavedState(final))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        _resume(vm)
    size = (final / STATE_FILE).stat().st_size / 2**20
    took = time.monotonic() - started
    progress(f"{vm.machine.label}: saved state ({size:.0f} MiB) in {took:.1f} s")
    return SavedState(final)


def _resume(vm: Vm) -> None:
    """Let the saved VM run on: continue it, reconnect, and set its clock (it lagged)."""
    if vm.qmp.status() != "running":
        vm.qmp.cont()
    vm.ssh = _reconnect(vm)
    vm.ssh.run(clock_sync_command(), 30 * vm.accelerator.timeout_scale)


def _reconnect(vm: Vm) -> SshSession:
    launched = Launched(vm.spec, vm.process, vm._watchdog, vm.qmp, vm.console, time.monotonic())
    return wait_until_ready(vm.machine, launched, vm.key, first_probe_timeout=0.5)


def restore(machine: GuestMachine, saved: SavedState, progress: Progress) -> Vm:
    """A new VM from `saved`: pristine overlay, new port, reseeded RNG, synced clock, new key."""
    run = new_run_dir()
    launched: Launched | None = None
    try:
        saved_key = load_run_key(saved.key_path)
        overlay = create_overlay(saved.disk, run.path, base_format="qcow2")
        incoming = incoming_from_file(saved.state_file)
        if machine.firmware.uses_ovmf and saved.varstore is None:
            raise SavedStateError(f"{saved.path} has no variable store for a UEFI guest")
        launched = launch(machine, run, overlay, saved_key, incoming, progress, saved.varstore)
        try:
            launched.qmp.wait_incoming(LOAD_TIMEOUT_S * machine.accelerator.timeout_scale)
            if launched.qmp.status() != "running":
                launched.qmp.cont()
        except QmpError as exc:
            raise SavedStateError(f"{machine.label}: loading {saved.path} failed: {exc}") from None
        ssh = wait_until_ready(machine, launched, saved_key, first_probe_timeout=0.5)
        key = generate_run_key(run.path)
        # One round trip: clock, a key of this VM's own (the saved one stays with the state),
        # and the modules check.
        first = clock_sync_command()
        first += f" printf '%s\\n' {shlex.quote(key.public_line)} >/root/.ssh/authorized_keys;"
        first += " " + modules_check_command()
        missing = ssh.run(first, 30 * machine.accelerator.timeout_scale).stdout.split()
        if missing:
            ssh.close()
            raise SavedStateError(f"restored guest lacks the VFIO modules: {' '.join(missing)}")
        ready = time.monotonic()
        times = BootTimes(launched.started, ready, "restore")
        vm = Vm(machine, launched.process, run, launched.watchdog, launched.spec, key,
                launched.console, launched.qmp, ssh, times)  # fmt: skip
        progress(f"{machine.label}: ready in {times.boot_to_ready_s:.2f} s (restored)")
        return vm
    except BaseException:
        abort_launch(run, launched)
        raise


def start_vm(
    image: BuiltImage,
    *,
    kernel: GuestKernel | None = None,
    accelerator: Accelerator | None = None,
    memory_mib: int = 1024,
    smp: int = 2,
    fresh: Fresh = "auto",
    progress: Progress = lambda _line: None,
    firmware: Firmware = Firmware.DIRECT,
    mok: tuple[Path, ...] = (),
) -> Vm:
    """A pristine VM: restored from the saved state ("auto"/"restore"), or cold-booted.
    `firmware` and `mok`: see GuestMachine.

    "auto" cold-boots and saves when no state exists yet (one worker does; the others wait for
    it and restore), and falls back to a cold boot, discarding the state, if it fails to load.
    "restore" raises instead of falling back; "boot" always boots cold and saves nothing.
    """
    machine = GuestMachine(
        image, accelerator or choose_accelerator(), memory_mib, smp, kernel, firmware, mok
    )
    if fresh != "boot" and kernel is not None and not reseeds_on_restore(kernel.config):
        # Restored copies would share the saved guest's RNG state: boot each one instead.
        progress(f"{machine.label}: no CONFIG_VMGENID=y in its config: cold-booting, no restore")
        fresh = "boot"
    if fresh == "boot":
        return cold_boot(machine, progress)
    saved = find_saved_state(machine)
    if saved is None:
        with _creation_lock(machine):
            saved = find_saved_state(machine)
            if saved is None:
                return _boot_and_save(machine, progress)
    try:
        return restore(machine, saved, progress)
    except (SavedStateError, BootError, SshError) as exc:
        if fresh == "restore":
            raise
        progress(f"{machine.label}: saved state unusable ({exc}); discarding it, booting cold")
        discard(saved)
        return cold_boot(machine, progress)


def reseeds_on_restore(config: Path | None) -> bool:
    """Whether a kernel reseeds its RNG when its VM generation ID changes (vmgenid driver)."""
    if config is None:
        return False
    try:
        return "CONFIG_VMGENID=y" in config.read_text(errors="replace").splitlines()
    except OSError:
        return False


def _boot_and_save(machine: GuestMachine, progress: Progress) -> Vm:
    vm = cold_boot(machine, progress)
    try:
        save_state(vm, progress)
    except BaseException:
        vm.close()
        raise
    return vm
