# SPDX-License-Identifier: MIT
"""The booted-L2 variant: L2's initramfs and init, L1 QEMU's options, and its `Machine`.

L2 runs the image's own kernel (the one L1 runs) with an initramfs made here: L1's static
busybox, an init script, and L2's driver module (hmdev_l2.ko, tests/vm/l2_driver/) when
given. init mounts proc/sys/devtmpfs, loads the driver (which binds to the device: enables
it, requests its INTx), then serves shell commands on ttyS0 for `ShellMachine`.

Memory: L2 gets L2_MEMORY_MIB of RAM but its kernel is told `mem=` L2_KERNEL_MIB, so the
range above is RAM no L2 code touches: the DMA buffers and the MSI target live there, and
/dev/mem lets root map it (STRICT_DEVMEM refuses only RAM the kernel owns).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core import cpio
from harness.nested.qemu import L1Qemu
from harness.nested.shell_machine import ShellMachine

L2_MEMORY_MIB = 256
L2_KERNEL_MIB = 192
# Clear of the top of RAM, where SeaBIOS keeps its tables.
DMA_AREA = (L2_KERNEL_MIB << 20, 32 << 20)
DMA_LENGTH = 48  # bytes per DMA check: crosses a page boundary; devmem moves 8 per call
BOOT_TIMEOUT_S = 3600.0
BUSYBOX = Path("/bin/busybox")
MODULE_NAME = "hmdev_l2.ko"
INITRAMFS = "l2-initramfs.cpio"
CONSOLE_LOG = "l2-console.log"

INIT = """#!/bin/busybox sh
# L2's PID 1 (harness/nested/l2.py): set up, load the driver, serve commands on ttyS0.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
dmesg -n 1
echo "L2: Linux $(uname -r), init at $(cut -d' ' -f1 /proc/uptime) s of uptime"
if [ -f /MODULE ]; then
    insmod /MODULE || echo "L2: insmod MODULE failed"
fi
exec </dev/ttyS0 >/dev/ttyS0 2>&1
stty -echo
echo "@@READY"
while IFS= read -r line; do
    n=${line%% *}
    echo "@@B $n"
    eval "${line#* }"
    echo "@@E $n $?"
done
poweroff -f
""".replace("MODULE", MODULE_NAME)


def initramfs_entries(busybox: bytes, module: bytes | None) -> list[cpio.Entry]:
    entries = [cpio.directory(d) for d in ("bin", "dev", "proc", "sys", "tmp")]
    entries += [
        cpio.char_device("dev/console", 5, 1),
        cpio.file("bin/busybox", busybox, executable=True),
        cpio.symlink("bin/sh", "busybox"),
        cpio.file("init", INIT.encode(), executable=True),
    ]
    if module is not None:
        entries.append(cpio.file(MODULE_NAME, module))
    return entries


def kernel_command_line() -> str:
    return f"console=ttyS0 mem={L2_KERNEL_MIB}M panic=-1 quiet"


def l2_spec_options(workdir: Path, kernel: Path, module: Path | None) -> dict[str, Any]:
    """L1Spec fields for a booted L2; writes its initramfs into `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    initrd = workdir / INITRAMFS
    data = cpio.archive(
        initramfs_entries(BUSYBOX.read_bytes(), module.read_bytes() if module else None)
    )
    initrd.write_bytes(data)
    return {
        "memory_mib": L2_MEMORY_MIB,
        "kernel": kernel,
        "initrd": initrd,
        "append": kernel_command_line(),
    }


def l2_machine_factory(
    workdir: Path, timeout: float = BOOT_TIMEOUT_S
) -> Callable[[L1Qemu], tuple[ShellMachine, int]]:
    def make(qemu: L1Qemu) -> tuple[ShellMachine, int]:
        assert qemu.serial is not None
        machine = ShellMachine(qemu.serial, workdir / CONSOLE_LOG, DMA_AREA)
        machine.wait_ready(timeout)
        return machine, DMA_LENGTH

    return make
