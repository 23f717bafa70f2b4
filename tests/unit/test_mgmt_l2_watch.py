# SPDX-License-Identifier: MIT
"""harness.mgmt.l2_watch and the domain XML of a booted guest with native PCIe hot-plug."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.core import cpio
from harness.mgmt.domain_xml import NATIVE_PCIE_HOTPLUG, DirectBoot, DomainSpec, domain_xml
from harness.mgmt.l2_watch import INIT, ours_seen, write_initramfs


def test_the_guest_reports_each_change_of_our_count() -> None:
    console = (
        "[    6.46] ACPI: \\_SB_.LNKS: No IRQ available\n"
        "L2-OURS 1 8.05\n"
        "[   98.83] pcieport 0000:00:01.0: pciehp: Slot(0): Button press\n"
        "L2-OURS 0 104.10\n"
        "L2-OURS 1 110.2\n"
    )
    assert ours_seen(console) == [1, 0, 1]
    assert ours_seen("") == []
    assert "grep -c 0x1de5" in INIT  # our vendor ID, as sysfs writes it


def test_the_initramfs_holds_busybox_and_the_init(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake")
    data = write_initramfs(tmp_path / "initrd", busybox).read_bytes()
    names = [entry.name for entry in cpio.parse(data)]
    assert {"init", "bin/busybox", "bin/sh", "dev/console"} <= set(names)


def test_a_booted_domain_has_its_kernel_console_and_native_hotplug() -> None:
    boot = DirectBoot(Path("/boot/vmlinuz-6.12"), Path("/w/initrd"), "console=ttyS0", Path("/w/c"))
    spec = DomainSpec("hx-e", "qemu", mdevs=("u1",), boot=boot, qemu_args=NATIVE_PCIE_HOTPLUG)
    domain = ET.fromstring(domain_xml(spec))
    assert domain.findtext("os/kernel") == "/boot/vmlinuz-6.12"
    assert domain.findtext("os/initrd") == "/w/initrd"
    assert domain.findtext("os/cmdline") == "console=ttyS0"
    assert domain.find("features/acpi") is not None
    serial = domain.find("devices/serial")
    assert serial is not None and serial.get("type") == "file"
    assert serial.find("source").get("path") == "/w/c"  # type: ignore[union-attr]
    qemu = "{http://libvirt.org/schemas/domain/qemu/1.0}"
    args = [a.get("value") for a in domain.iter(f"{qemu}arg")]
    assert args == ["-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    # No OS: no kernel, no console.
    bare = ET.fromstring(domain_xml(DomainSpec("hx-a", "qemu", mdevs=("u1",))))
    assert bare.find("os/kernel") is None and bare.find("devices/serial") is None
