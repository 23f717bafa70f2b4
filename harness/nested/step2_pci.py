# SPDX-License-Identifier: MIT
"""Step 2: the guest sees a PCI device with our IDs, BARs and MSI capability, and enables
it as a driver's probe does (memory decode, bus mastering).
"""

from __future__ import annotations

from harness.core.checks import equal, expect
from harness.nested import pci
from harness.nested.scenario import Regs, Scenario
from harness.refdev import contract as c
from harness.refdev import registers as r


def check_found(s: Scenario) -> None:
    found = s.machine.probe(r.PCI_VENDOR_ID, r.PCI_DEVICE_ID)
    expect(
        found is not None,
        f"no PCI function {r.PCI_VENDOR_ID:04x}:{r.PCI_DEVICE_ID:04x} on the {s.machine.name} "
        "machine's bus",
    )
    assert found is not None
    s.device = found
    s.regs = Regs(s.machine, found.bar(0).address)


def check_identity(s: Scenario) -> None:
    equal(s.cfg_read(pci.VENDOR_ID, 2), r.PCI_VENDOR_ID, "vendor ID")
    equal(s.cfg_read(pci.DEVICE_ID, 2), r.PCI_DEVICE_ID, "device ID")
    equal(s.cfg_read(0x08, 4), r.PCI_CLASS << 8 | r.PCI_REVISION, "class code and revision")
    equal(s.cfg_read(0x2C, 2), r.PCI_VENDOR_ID, "subsystem vendor ID")
    equal(s.cfg_read(pci.INTERRUPT_PIN, 1), 1, "interrupt pin (INTA#)")


def check_bars(s: Scenario) -> None:
    bar0, bar2 = s.dev.bar(0), s.dev.bar(2)
    expect(
        not bar0.is_64bit and not bar0.prefetchable,
        f"BAR0 should be 32-bit, non-prefetchable: {bar0}",
    )
    equal(bar0.size, c.BAR0_SIZE, "BAR0 size")
    expect(bar2.is_64bit and bar2.prefetchable, f"BAR2 should be 64-bit prefetchable: {bar2}")
    equal(bar2.size, s.mem_size, "BAR2 size")
    extra = sorted(set(s.dev.bars) - {0, 2})
    expect(not extra, f"unexpected BARs {extra}")


def check_msi_capability(s: Scenario) -> None:
    offset = pci.find_capability(s.machine, s.dev.bdf, pci.CAP_ID_MSI)
    equal(offset, r.PCI_MSI_CAP_OFFSET, "MSI capability offset")
    flags = s.cfg_read(r.PCI_MSI_CAP_OFFSET + pci.MSI_FLAGS, 2)
    expect(flags & pci.MSI_FLAGS_64BIT != 0, f"MSI control {flags:#x}: not 64-bit capable")
    equal((flags >> 1) & 0x7, 0, "MSI multiple message capable (1 vector)")
    equal(flags & pci.MSI_FLAGS_ENABLE, 0, "MSI enable before the driver enabled it")


def check_qemu_pci_view(s: Scenario) -> None:
    """QEMU's own device model (QMP query-pci) agrees with what the guest found."""
    devices = [d for bus in s.qemu.query_pci() for d in bus.get("devices", [])]
    ours = [d for d in devices if d.get("qdev_id") == s.qdev_id]
    expect(len(ours) == 1, f"QMP query-pci lists no vfio-pci device {s.qdev_id!r}: {devices}")
    ids = ours[0]["id"]
    equal((ids["vendor"], ids["device"]), (r.PCI_VENDOR_ID, r.PCI_DEVICE_ID), "QEMU's device IDs")
    sizes = {region["bar"]: region["size"] for region in ours[0].get("regions", [])}
    equal(sizes, {0: c.BAR0_SIZE, 2: s.mem_size}, "QEMU's BAR sizes (query-pci regions)")


def check_enable(s: Scenario) -> None:
    """What pci_enable_device() + pci_set_master() do: memory decode and bus mastering on."""
    command = s.cfg_read(pci.COMMAND, 2)
    s.cfg_write(pci.COMMAND, 2, command | pci.COMMAND_MEMORY | pci.COMMAND_MASTER)
    now = s.cfg_read(pci.COMMAND, 2)
    wanted = pci.COMMAND_MEMORY | pci.COMMAND_MASTER
    equal(now & wanted, wanted, "command register after enabling memory and bus master")
