# SPDX-License-Identifier: MIT
"""The QEMU command line of a disposable VM, built from a `VmSpec` (pure: touches nothing).

Machine: q35. Debian's kernels find their root disk and NIC through virtio-pci (virtio_pci,
virtio_blk, virtio_net are modules the initrd loads), pvpanic-pci is a PCI device, and a later
vIOMMU (intel-iommu) needs q35; microvm has no PCI bus by default and would need virtio-mmio
devices passed on the kernel command line. `-nodefaults -no-user-config` leave out every device
not asked for (no VGA, no default NIC, no floppy/CD), which is also what makes a saved state
restorable: the restoring QEMU must be given the same device list, so the builder is
deterministic.

The serial console goes to a file (the launcher tails it) rather than to stdio: with
`-display none` and no `-nographic`, QEMU's stdio is never tied to the console or a monitor.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.vm.accel import Accelerator

QEMU_BINARY = "qemu-system-x86_64"
MACHINE = "q35"
GUEST_SSH_PORT = 22
# sun_path is 108 bytes including the NUL.
UNIX_SOCKET_PATH_MAX = 107

_PARAM_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class FirmwareDrives:
    """A UEFI boot instead of -kernel: OVMF's code (read-only) and this VM's own copy of the
    variable store as pflash, and the ESP disk (shim, GRUB, grub.cfg, kernel, initrd), which
    boots first. `smm`: the Secure Boot build, whose variable store only SMM may write."""

    code: Path
    varstore: Path
    esp: Path
    smm: bool


@dataclass(frozen=True)
class VmSpec:
    """Everything that decides one VM's QEMU command line. Paths must be absolute."""

    kernel: Path  # uncompressed vmlinux (PVH entry, boots faster under TCG) or bzImage
    disk: Path  # the VM's own qcow2 overlay (see overlay.py); never the shared base image
    console_log: Path
    qmp_socket: Path
    ssh_port: int  # host side of the forward, on 127.0.0.1 (see ports.py)
    accelerator: Accelerator
    initrd: Path | None = None
    # Read-only raw disks after the root disk (/dev/vdb, /dev/vdc...), e.g. a custom kernel's
    # modules; shared by every VM that boots that kernel, hence never writable.
    extra_disks: Sequence[Path] = ()
    memory_mib: int = 1024
    smp: int = 2
    kernel_params: Mapping[str, str] = field(default_factory=dict)  # our own key=value
    loglevel: int | None = None  # None: the kernel's default; 0..7 otherwise
    quiet: bool = False
    guest_ssh_port: int = GUEST_SSH_PORT
    rng: bool = True  # virtio-rng: the guest has entropy at once (and can reseed on restore)
    incoming: str | None = None  # `-incoming` URI: restore a saved state instead of booting
    start_paused: bool = False  # `-S`: wait for QMP `cont` (e.g. to reseed a restored guest)
    pidfile: Path | None = None
    name: str | None = None
    qemu_binary: str = QEMU_BINARY
    extra_args: Sequence[str] = ()
    firmware: FirmwareDrives | None = None  # None: QEMU loads `kernel` and `initrd` itself


def incoming_from_file(state: Path) -> str:
    """An `-incoming` URI that reads a state saved by QMP `migrate` to `exec:cat > FILE`."""
    return f"exec:cat {shlex.quote(str(state))}"


def kernel_command_line(spec: VmSpec) -> str:
    """console=ttyS0 (the log file), panic=-1 (reboot at once; -no-reboot turns it into exit)."""
    words = ["console=ttyS0", "panic=-1"]
    if spec.quiet:
        words.append("quiet")
    if spec.loglevel is not None:
        if not 0 <= spec.loglevel <= 7:
            raise ValueError(f"loglevel must be 0..7, not {spec.loglevel}")
        words.append(f"loglevel={spec.loglevel}")
    for key, value in spec.kernel_params.items():
        if not _PARAM_KEY.match(key):
            raise ValueError(f"bad kernel parameter name {key!r}")
        if not value or any(c.isspace() or c in "\"'" for c in value):
            raise ValueError(f"kernel parameter {key}: value must be non-empty, no spaces/quotes")
        words.append(f"{key}={value}")
    return " ".join(words)


def _pflash_args(firmware: FirmwareDrives) -> list[str]:
    args = []
    if firmware.smm:
        args += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    code, varstore = _opt(str(firmware.code)), _opt(str(firmware.varstore))
    args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
    args += ["-drive", f"if=pflash,format=raw,unit=1,file={varstore}"]
    return args


def build_qemu_command(spec: VmSpec) -> list[str]:
    """argv for `spec`, starting with the QEMU binary."""
    _validate(spec)
    args: list[str] = [spec.qemu_binary]
    if spec.name:
        args += ["-name", _opt(spec.name)]
    firmware = spec.firmware
    machine = f"{MACHINE},smm=on" if firmware is not None and firmware.smm else MACHINE
    args += ["-machine", machine, *spec.accelerator.qemu_args]
    args += ["-m", f"{spec.memory_mib}M", "-smp", str(spec.smp)]
    args += ["-nodefaults", "-no-user-config", "-display", "none"]
    if firmware is None:
        args += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            args += ["-initrd", str(spec.initrd)]
        args += ["-append", kernel_command_line(spec)]
    else:
        args += _pflash_args(firmware)
    args += [
        "-drive",
        f"file={_opt(str(spec.disk))},format=qcow2,if=none,id=root,discard=unmap",
        "-device",
        "virtio-blk-pci,drive=root",
    ]
    for index, extra in enumerate(spec.extra_disks):
        args += [
            "-drive",
            f"file={_opt(str(extra))},format=raw,if=none,id=extra{index},readonly=on",
            "-device",
            f"virtio-blk-pci,drive=extra{index}",
        ]
    if firmware is not None:  # after the others: the root disk stays /dev/vda
        args += [
            "-drive",
            f"file={_opt(str(firmware.esp))},format=raw,if=none,id=esp,readonly=on",
            "-device",
            "virtio-blk-pci,drive=esp,bootindex=0",
        ]
    # Forward only on loopback: the guest's SSH must not be reachable from the network.
    forward = f"tcp:127.0.0.1:{spec.ssh_port}-:{spec.guest_ssh_port}"
    args += ["-netdev", f"user,id=net0,hostfwd={forward}", "-device", "virtio-net-pci,netdev=net0"]
    if spec.rng:
        args += ["-device", "virtio-rng-pci"]
    args += [
        "-chardev",
        f"file,id=console,path={_opt(str(spec.console_log))}",
        "-serial",
        "chardev:console",
        "-chardev",
        f"socket,id=qmp,path={_opt(str(spec.qmp_socket))},server=on,wait=off",
        "-mon",
        "chardev=qmp,mode=control",
    ]
    # A guest panic (with pvpanic_pci loaded) exits QEMU with status 1; without it, panic=-1
    # plus -no-reboot exits 0 like a poweroff and only the console tells them apart.
    args += ["-device", "pvpanic-pci", "-action", "panic=exit-failure", "-no-reboot"]
    if spec.pidfile is not None:
        args += ["-pidfile", str(spec.pidfile)]
    if spec.start_paused:
        args.append("-S")
    if spec.incoming is not None:
        args += ["-incoming", spec.incoming]
    args += list(spec.extra_args)
    return args


def _validate(spec: VmSpec) -> None:
    paths = {
        "kernel": spec.kernel,
        "disk": spec.disk,
        "console_log": spec.console_log,
        "qmp_socket": spec.qmp_socket,
        "initrd": spec.initrd,
        "pidfile": spec.pidfile,
    }
    paths.update({f"extra_disks[{i}]": disk for i, disk in enumerate(spec.extra_disks)})
    if spec.firmware is not None:
        paths.update(
            {
                "firmware.code": spec.firmware.code,
                "firmware.varstore": spec.firmware.varstore,
                "firmware.esp": spec.firmware.esp,
            }
        )
    for what, path in paths.items():
        # QEMU may run from another directory than the harness: relative paths would move.
        if path is not None and not path.is_absolute():
            raise ValueError(f"{what} must be an absolute path, not {path}")
    if len(str(spec.qmp_socket).encode()) > UNIX_SOCKET_PATH_MAX:
        raise ValueError(f"QMP socket path longer than {UNIX_SOCKET_PATH_MAX} bytes")
    for what, port in (("ssh_port", spec.ssh_port), ("guest_ssh_port", spec.guest_ssh_port)):
        if not 0 < port < 1 << 16:
            raise ValueError(f"{what} {port} is not a TCP port")
    if spec.memory_mib < 64 or spec.smp < 1:
        raise ValueError("memory_mib must be >= 64 and smp >= 1")


def _opt(value: str) -> str:
    """Escape a value inside a QEMU `key=value,...` option: a comma is written twice."""
    return value.replace(",", ",,")
