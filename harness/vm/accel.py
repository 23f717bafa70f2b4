# SPDX-License-Identifier: MIT
"""Choose QEMU's accelerator: KVM only when it is proved to work, TCG otherwise.

A /dev/kvm node proves nothing: on some hosts (nested clouds, sandboxes) it opens, answers
ioctls and still hangs a real guest. KVM is chosen only when every step below passes, and the
first failing step is the recorded reason:

1. /proc/cpuinfo has the vmx or svm flag;
2. /dev/kvm opens read-write, KVM_GET_API_VERSION is 12 and KVM_CREATE_VM succeeds;
3. a probe guest runs to completion under `-accel kvm` within a hard timeout (QEMU is killed
   on timeout, so no process is left behind).

The probe's result is cached per process: it costs a QEMU start.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KVM_API_VERSION = 12
_KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)
_KVM_CREATE_VM = 0xAE01  # _IO(KVMIO, 0x01)

# TCG is roughly 5-10x slower than KVM for a booting guest; timeouts are written for KVM.
TCG_TIMEOUT_SCALE = 8.0
KVM_TIMEOUT_SCALE = 1.0
PROBE_TIMEOUT_S = 10.0

TCG_ARGS = ("-accel", "tcg,thread=multi", "-cpu", "max")
KVM_ARGS = ("-accel", "kvm", "-cpu", "host")

QEMU_BINARY = "qemu-system-x86_64"


@dataclass(frozen=True)
class Accelerator:
    name: str  # "kvm" or "tcg"
    qemu_args: tuple[str, ...]
    timeout_scale: float  # multiply KVM-calibrated timeouts by this
    reason: str  # why this one: recorded in the results
    nested: bool | None = None  # KVM only: nested virtualization enabled on the host


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


Probe = Callable[[], ProbeResult]


@dataclass(frozen=True)
class HostPaths:
    """Where the facts are read from; tests point these at a fake tree."""

    dev_kvm: Path = Path("/dev/kvm")
    proc_cpuinfo: Path = Path("/proc/cpuinfo")
    sysfs: Path = Path("/sys")


def tcg(reason: str) -> Accelerator:
    return Accelerator("tcg", TCG_ARGS, TCG_TIMEOUT_SCALE, reason)


def choose_accelerator(
    paths: HostPaths | None = None,
    probe: Probe | None = None,
    open_kvm: Callable[[Path], str | None] | None = None,
) -> Accelerator:
    """The accelerator for this host, with the reason.

    `probe` runs a guest under KVM (default: `cached_qemu_probe`); `open_kvm` checks the
    device and returns None when usable or why not (default: `check_kvm_device`).
    """
    paths = paths or HostPaths()
    vendor = cpu_virt_vendor(paths.proc_cpuinfo)
    if vendor is None:
        return tcg(f"TCG: no vmx/svm flag in {paths.proc_cpuinfo}")
    if not paths.dev_kvm.exists():
        return tcg(f"TCG: {paths.dev_kvm} does not exist")
    problem = (open_kvm or check_kvm_device)(paths.dev_kvm)
    if problem is not None:
        return tcg(f"TCG: {problem}")
    result = (probe or cached_qemu_probe)()
    if not result.ok:
        return tcg(f"TCG: KVM probe guest failed: {result.detail}")
    nested = nested_enabled(paths.sysfs, vendor)
    nested_text = {True: "nested on", False: "nested off", None: "nested unknown"}[nested]
    reason = f"KVM: {vendor} usable, probe guest ran ({result.detail}); {nested_text}"
    return Accelerator("kvm", KVM_ARGS, KVM_TIMEOUT_SCALE, reason, nested)


def cpu_virt_vendor(cpuinfo: Path) -> str | None:
    """The CPU's virtualization flag, vmx (Intel) or svm (AMD), or None."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            for vendor in ("vmx", "svm"):
                if vendor in flags:
                    return vendor
    return None


def nested_enabled(sysfs: Path, vendor: str) -> bool | None:
    """kvm_intel/kvm_amd's `nested` parameter: "Y"/"1" is on; None when unreadable."""
    module = "kvm_intel" if vendor == "vmx" else "kvm_amd"
    try:
        value = (sysfs / "module" / module / "parameters" / "nested").read_text().strip()
    except OSError:
        return None
    return value in {"Y", "y", "1"}


def check_kvm_device(dev_kvm: Path) -> str | None:
    """None when /dev/kvm speaks API 12 and creates a VM; otherwise what failed."""
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
    except OSError as error:
        return f"cannot open {dev_kvm}: {error.strerror}"
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION, 0)
        if version != KVM_API_VERSION:
            return f"KVM_GET_API_VERSION is {version}, expected {KVM_API_VERSION}"
        vm_fd = fcntl.ioctl(fd, _KVM_CREATE_VM, 0)
        os.close(vm_fd)
    except OSError as error:
        return f"KVM ioctl on {dev_kvm} failed: {error.strerror}"
    finally:
        os.close(fd)
    return None


# The probe guest: a 47-byte multiboot image (a.out kludge, so QEMU loads it raw at 1 MiB)
# that writes 0x2a to an isa-debug-exit port; QEMU then exits with (0x2a << 1) | 1 = 85.
# Before that it counts down a register 2^28 times, so a KVM that only pretends (emulating
# every instruction in the kernel) shows up as a timeout, not as a pass.
_DEBUG_EXIT_PORT = 0xF4
_PROBE_EXIT_VALUE = 0x2A
PROBE_EXIT_STATUS = (_PROBE_EXIT_VALUE << 1) | 1
_MULTIBOOT_MAGIC = 0x1BADB002
_MULTIBOOT_AOUT_KLUDGE = 0x00010000
_LOAD_ADDRESS = 0x100000
_HEADER_SIZE = 32


def probe_guest_image() -> bytes:
    flags = _MULTIBOOT_AOUT_KLUDGE
    checksum = -(_MULTIBOOT_MAGIC + flags) & 0xFFFFFFFF
    header = struct.pack(
        "<8I",
        _MULTIBOOT_MAGIC,
        flags,
        checksum,
        _LOAD_ADDRESS,  # header_addr: the header is the image's first byte
        _LOAD_ADDRESS,  # load_addr
        0,  # load_end_addr: the whole file
        0,  # bss_end_addr: none
        _LOAD_ADDRESS + _HEADER_SIZE,  # entry
    )
    code = bytes(
        [
            0xB9, 0x00, 0x00, 0x00, 0x10,  # mov ecx, 1 << 28
            0x49,  # dec ecx (32-bit protected mode)
            0x75, 0xFD,  # jnz back to dec
            0xB0, _PROBE_EXIT_VALUE,  # mov al, 0x2a
            0xE6, _DEBUG_EXIT_PORT,  # out 0xf4, al
            0xF4,  # hlt
            0xEB, 0xFD,  # jmp back to hlt
        ]
    )  # fmt: skip
    return header + code


def probe_command(image: Path, accel: str = "kvm", qemu: str = QEMU_BINARY) -> list[str]:
    return [
        qemu,
        "-machine", "pc",
        "-accel", accel,
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-m", "16",
        "-kernel", str(image),
        "-device", f"isa-debug-exit,iobase={_DEBUG_EXIT_PORT:#x},iosize=0x04",
        "-no-reboot",
    ]  # fmt: skip


def qemu_probe(
    accel: str = "kvm", timeout_s: float = PROBE_TIMEOUT_S, qemu: str = QEMU_BINARY
) -> ProbeResult:
    """Run the probe guest; it must exit with PROBE_EXIT_STATUS before the timeout."""
    if shutil.which(qemu) is None:
        return ProbeResult(False, f"{qemu} not found")
    with tempfile.TemporaryDirectory(prefix="harness-kvm-probe-") as scratch:
        image = Path(scratch) / "probe.bin"
        image.write_bytes(probe_guest_image())
        return _run_probe(probe_command(image, accel, qemu), timeout_s)


def _run_probe(command: Sequence[str], timeout_s: float) -> ProbeResult:
    start = time.monotonic()
    # Own session: on timeout the whole group is killed, and waited for, before returning.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return ProbeResult(False, f"no exit within {timeout_s:g} s (killed)")
    elapsed = time.monotonic() - start
    if process.returncode != PROBE_EXIT_STATUS:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return ProbeResult(False, f"exit status {process.returncode}: {tail[0]}")
    return ProbeResult(True, f"{elapsed:.2f} s")


_probe_cache: dict[str, ProbeResult] = {}


def cached_qemu_probe() -> ProbeResult:
    """`qemu_probe()` for KVM, run at most once per process."""
    if "kvm" not in _probe_cache:
        _probe_cache["kvm"] = qemu_probe("kvm")
    return _probe_cache["kvm"]


def clear_probe_cache() -> None:
    _probe_cache.clear()
