# SPDX-License-Identifier: MIT
"""A guest OS for hot-unplug under libvirt: L1's own kernel with an initramfs whose init only
reports, on the serial console, how many functions with our vendor ID it sees whenever that
changes. The kernel's pciehp does the rest: it acknowledges an unplug request (the attention
button QEMU presses for `virsh detach-device`, or for our device's REQ) by powering the slot
off, which is what lets QEMU and libvirt let go of the mdev.

    write_initramfs(workdir / "l2-initramfs.cpio")
    ours_seen(console_log_text)   # [1, 0, 1, 0]: every count init reported, in order
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.core import cpio
from harness.refdev import registers as r

BUSYBOX = Path("/bin/busybox")
CMDLINE = "console=ttyS0 panic=-1 quiet"
MARK = "L2-OURS"

INIT = f"""#!/bin/busybox sh
# PID 1 of the hot-unplug guest (harness/mgmt/l2_watch.py).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
last=none
while :; do
    n=$(cat /sys/bus/pci/devices/*/vendor 2>/dev/null | grep -c {r.PCI_VENDOR_ID:#06x})
    if [ "$n" != "$last" ]; then
        echo "{MARK} $n $(cut -d' ' -f1 /proc/uptime)"
        last=$n
    fi
    sleep 0.2
done
"""

_SEEN = re.compile(rf"^{MARK} (\d+) ", re.M)


def write_initramfs(path: Path, busybox: Path = BUSYBOX) -> Path:
    entries = [cpio.directory(d) for d in ("bin", "dev", "proc", "sys")]
    entries += [
        cpio.char_device("dev/console", 5, 1),
        cpio.file("bin/busybox", busybox.read_bytes(), executable=True),
        cpio.symlink("bin/sh", "busybox"),
        cpio.file("init", INIT.encode(), executable=True),
    ]
    path.write_bytes(cpio.archive(entries))
    return path


def ours_seen(console: str) -> list[int]:
    """How many of our functions the guest saw, each time the number changed."""
    return [int(count) for count in _SEEN.findall(console)]
