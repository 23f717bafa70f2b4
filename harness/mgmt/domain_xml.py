# SPDX-License-Identifier: MIT
"""libvirt domain XML for the checks: what we define (a diskless q35 with our mdevs as
hostdevs) and what libvirt says it made of it (`virsh dumpxml`'s hostdevs).

    domain_xml(DomainSpec("hx-a", "qemu", mdevs=(uuid,)))
    hostdevs(virsh("dumpxml", "hx-a"))   # [Hostdev(uuid, alias="hostdev0", pci="0000:02:00.0")]
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
DomainType = Literal["kvm", "qemu"]


@dataclass(frozen=True)
class DirectBoot:
    """A guest OS for the domain: L1's kernel and an initramfs, its serial console to a file."""

    kernel: Path
    initrd: Path
    cmdline: str
    console_log: Path


# q35 hot-plugs through ACPI by default (QEMU 6.1 on), where the guest's _EJ0 ends an unplug;
# with native PCIe hot-plug the guest's pciehp powers the slot off, as on bare metal.
NATIVE_PCIE_HOTPLUG = ("-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off")


@dataclass(frozen=True)
class DomainSpec:
    name: str
    domain_type: DomainType  # "kvm" when L1 can run KVM guests, else "qemu" (TCG)
    memory_mib: int = 128
    mdevs: Sequence[str] = ()  # UUIDs, each a vfio-pci hostdev
    # Empty pcie-root-ports: on q35 every hot-plugged device needs a free one.
    spare_root_ports: int = 1
    # Put the mdevs on the root bus (pcie.0) from this slot on, where nothing can be
    # hot-unplugged; None: libvirt places them, on q35 each behind a pcie-root-port.
    fixed_slot: int | None = None
    qemu_args: Sequence[str] = field(default_factory=tuple)  # <qemu:commandline>
    boot: DirectBoot | None = None  # None: no OS (SeaBIOS finds nothing and retries)
    # A firmware image in place of SeaBIOS (<loader type='rom'>), readable by libvirt's QEMU.
    loader: str | None = None
    # vfio-pci properties libvirt has no XML for, set on each mdev through <qemu:override>
    # ("enable-migration": "on"); the hostdevs are then named ua-mdev0, ua-mdev1, ...
    hostdev_properties: Mapping[str, str] = field(default_factory=dict)
    # An ivshmem-plain device with this much shared memory (<shmem>), named after the domain:
    # a RAM region on a PCI BAR, which QEMU DMA-maps while the guest enables the BAR. It goes
    # on pcie.0 after the mdevs when they have a fixed slot (else behind a PCI bridge).
    shmem_mib: int = 0


@dataclass(frozen=True)
class Hostdev:
    """An mdev hostdev as libvirt reports it for a defined or running domain."""

    uuid: str
    alias: str | None  # "hostdev0": QEMU's device id, only while the domain runs
    pci: str | None  # the guest-side address libvirt assigned, "0000:bb:ss.f"


def hostdev_element(
    uuid: str, root_slot: int | None = None, alias: str | None = None
) -> ET.Element:
    hostdev = ET.Element("hostdev", mode="subsystem", type="mdev", model="vfio-pci")
    source = ET.SubElement(hostdev, "source")
    ET.SubElement(source, "address", uuid=uuid)
    if alias is not None:
        ET.SubElement(hostdev, "alias", name=alias)
    if root_slot is not None:
        hostdev.append(pci_address_element(root_slot))
    return hostdev


def pci_address_element(root_slot: int) -> ET.Element:
    """A device's <address> on pcie.0 (bus 0)."""
    return ET.Element("address", type="pci", domain="0", bus="0", slot=str(root_slot), function="0")


def hostdev_xml(uuid: str) -> str:
    """The device XML for `virsh attach-device` / `detach-device`."""
    return ET.tostring(hostdev_element(uuid), encoding="unicode")


def domain_xml(spec: DomainSpec) -> str:
    # No disks, graphics, USB or balloon: fewer devices for TCG to emulate, and nothing in the
    # guest's PCI view but root ports and our function. SeaBIOS finds nothing to boot and
    # keeps retrying, which keeps the domain running.
    domain = ET.Element("domain", type=spec.domain_type)
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(spec.memory_mib)
    ET.SubElement(domain, "vcpu").text = "1"
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type", arch="x86_64", machine="q35").text = "hvm"
    if spec.boot is not None:
        ET.SubElement(os_, "kernel").text = str(spec.boot.kernel)
        ET.SubElement(os_, "initrd").text = str(spec.boot.initrd)
        ET.SubElement(os_, "cmdline").text = spec.boot.cmdline
        features = ET.SubElement(domain, "features")
        ET.SubElement(features, "acpi")
        ET.SubElement(features, "apic")
    if spec.loader is not None:
        ET.SubElement(os_, "loader", type="rom").text = spec.loader
    devices = ET.SubElement(domain, "devices")
    ET.SubElement(devices, "controller", type="usb", model="none")
    ET.SubElement(devices, "memballoon", model="none")
    # libvirt gives an index-less PCI controller index 0, which on q35 must be the root.
    ET.SubElement(devices, "controller", type="pci", index="0", model="pcie-root")
    for _ in range(spec.spare_root_ports):
        ET.SubElement(devices, "controller", type="pci", model="pcie-root-port")
    if spec.boot is not None:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=str(spec.boot.console_log))
        ET.SubElement(serial, "target", port="0")
    aliases = [mdev_alias(i) if spec.hostdev_properties else None for i in range(len(spec.mdevs))]
    for index, uuid in enumerate(spec.mdevs):
        slot = None if spec.fixed_slot is None else spec.fixed_slot + index
        devices.append(hostdev_element(uuid, slot, aliases[index]))
    if spec.shmem_mib:
        shmem = ET.SubElement(devices, "shmem", name=spec.name)
        ET.SubElement(shmem, "model", type="ivshmem-plain")
        ET.SubElement(shmem, "size", unit="M").text = str(spec.shmem_mib)
        if spec.fixed_slot is not None:
            slot = spec.fixed_slot + len(spec.mdevs)
            shmem.append(pci_address_element(slot))
    ET.register_namespace("qemu", QEMU_NS)
    if spec.qemu_args:
        commandline = ET.SubElement(domain, f"{{{QEMU_NS}}}commandline")
        for arg in spec.qemu_args:
            ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=arg)
    if spec.hostdev_properties:
        override = ET.SubElement(domain, f"{{{QEMU_NS}}}override")
        for alias in aliases:
            device = ET.SubElement(override, f"{{{QEMU_NS}}}device", alias=str(alias))
            frontend = ET.SubElement(device, f"{{{QEMU_NS}}}frontend")
            for name, value in spec.hostdev_properties.items():
                # QEMU's OnOffAuto properties ("enable-migration") take a string, not a bool:
                # type='bool' gives "Invalid parameter type for 'enable-migration'".
                ET.SubElement(
                    frontend, f"{{{QEMU_NS}}}property", name=name, type="string", value=value
                )
    return ET.tostring(domain, encoding="unicode")


def mdev_alias(index: int) -> str:
    """The user alias of the index-th mdev hostdev: QEMU's device id, and what
    <qemu:override> names it by. libvirt requires user aliases to start with "ua-"."""
    return f"ua-mdev{index}"


def _pci_address(element: ET.Element | None) -> str | None:
    if element is None or element.get("type") != "pci":
        return None
    parts = [int(element.get(key, "0"), 0) for key in ("domain", "bus", "slot", "function")]
    return "{:04x}:{:02x}:{:02x}.{:x}".format(*parts)


def hostdevs(dumpxml: str) -> list[Hostdev]:
    """The mdev hostdevs of a domain's XML, in document order."""
    found = []
    for element in ET.fromstring(dumpxml).iterfind("devices/hostdev[@type='mdev']"):
        source = element.find("source/address")
        alias = element.find("alias")
        found.append(
            Hostdev(
                uuid="" if source is None else source.get("uuid", ""),
                alias=None if alias is None else alias.get("name"),
                pci=_pci_address(element.find("address")),
            )
        )
    return found
