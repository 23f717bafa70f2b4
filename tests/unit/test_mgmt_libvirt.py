# SPDX-License-Identifier: MIT
"""The pure parts of harness.mgmt's libvirt checks: the domain XML we define, the hostdevs
libvirt reports back, query-pci's bridges followed, and what virsh's errors mean. The
libvirt and QEMU texts are shaped as libvirt 11.3 and QEMU 10.0 wrote them in the
trixie-libvirt L1."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from harness.mgmt import virsh as virsh_mod
from harness.mgmt.domain_xml import QEMU_NS, DomainSpec, Hostdev, domain_xml, hostdev_xml, hostdevs
from harness.mgmt.query_pci import functions, matching
from harness.mgmt.virsh import ErrorKind, VirshError, classify, holder, virsh

UUID = "27f9be3c-7675-4301-9753-ec929a5ac0e6"
OTHER = "5987c3c4-4fe6-478d-9355-02a1d48c411b"


# -- the XML we define -----------------------------------------------------------------


def test_domain_is_a_diskless_q35_with_the_mdevs_as_hostdevs() -> None:
    root = ET.fromstring(domain_xml(DomainSpec("hx-a", "qemu", mdevs=(UUID, OTHER))))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "hx-a"
    memory = root.find("memory")
    assert memory is not None and (memory.get("unit"), memory.text) == ("MiB", "128")
    os_type = root.find("os/type")
    assert os_type is not None and os_type.get("machine") == "q35"
    devices = root.find("devices")
    assert devices is not None
    assert not devices.findall("disk") and not devices.findall("graphics")
    sources = [
        (h.get("type"), h.get("model"), h.get("mode"), h.find("source/address").get("uuid"))  # type: ignore[union-attr]
        for h in devices.findall("hostdev")
    ]
    assert sources == [
        ("mdev", "vfio-pci", "subsystem", UUID),
        ("mdev", "vfio-pci", "subsystem", OTHER),
    ]
    # Without a guest-side address libvirt places them (behind root ports).
    assert all(h.find("address") is None for h in devices.findall("hostdev"))
    assert root.find(f"{{{QEMU_NS}}}commandline") is None


def test_the_root_controller_comes_before_the_spare_root_ports() -> None:
    # libvirt makes an index-less first PCI controller index 0, which q35 wants as pcie-root.
    root = ET.fromstring(domain_xml(DomainSpec("hx-c", "kvm", spare_root_ports=2)))
    pci = [
        (c.get("index"), c.get("model")) for c in root.iterfind("devices/controller[@type='pci']")
    ]
    assert pci == [("0", "pcie-root"), (None, "pcie-root-port"), (None, "pcie-root-port")]
    assert root.get("type") == "kvm"


def test_fixed_slots_put_the_mdevs_on_the_root_bus() -> None:
    spec = DomainSpec("hx-d", "qemu", mdevs=(UUID, OTHER), fixed_slot=5)
    addresses = [
        (a.get("type"), a.get("bus"), a.get("slot"))
        for a in ET.fromstring(domain_xml(spec)).iterfind("devices/hostdev/address")
    ]
    assert addresses == [("pci", "0", "5"), ("pci", "0", "6")]


def test_shared_memory_is_an_ivshmem_plain_next_to_the_fixed_mdevs() -> None:
    spec = DomainSpec("d", "qemu", mdevs=("u1",), spare_root_ports=0, fixed_slot=5, shmem_mib=1)
    shmem = ET.fromstring(domain_xml(spec)).find("devices/shmem")
    assert shmem is not None and shmem.get("name") == "d"
    model, size, address = shmem.find("model"), shmem.find("size"), shmem.find("address")
    assert model is not None and model.get("type") == "ivshmem-plain"
    assert size is not None and (size.get("unit"), size.text) == ("M", "1")
    assert address is not None and (address.get("bus"), address.get("slot")) == ("0", "6")
    assert ET.fromstring(domain_xml(DomainSpec("d", "qemu"))).find("devices/shmem") is None


def test_qemu_args_go_to_the_qemu_namespace_in_order() -> None:
    text = domain_xml(DomainSpec("hx-q", "qemu", qemu_args=("-trace", "enable=vfio_*")))
    args = ET.fromstring(text).findall(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg")
    assert [a.get("value") for a in args] == ["-trace", "enable=vfio_*"]


def test_the_attach_xml_is_one_hostdev() -> None:
    element = ET.fromstring(hostdev_xml(UUID))
    assert element.tag == "hostdev" and element.get("type") == "mdev"
    assert [a.get("uuid") for a in element.iterfind("source/address")] == [UUID]


# -- what libvirt reports --------------------------------------------------------------

DUMPXML = f"""<domain type='qemu' id='1'><name>hx-a</name><devices>
  <controller type='pci' index='2' model='pcie-root-port'><alias name='pci.2'/></controller>
  <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci' display='off'>
    <source><address uuid='{UUID}'/></source>
    <alias name='hostdev0'/>
    <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
  </hostdev>
  <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
    <source><address uuid='{OTHER}'/></source>
  </hostdev>
  <hostdev mode='subsystem' type='pci'><source><address bus='0x03'/></source></hostdev>
</devices></domain>"""


def test_hostdevs_of_a_running_and_a_defined_domain() -> None:
    assert hostdevs(DUMPXML) == [
        Hostdev(UUID, "hostdev0", "0000:02:00.0"),
        Hostdev(OTHER, None, None),  # not running: no alias, no address yet
    ]


# -- query-pci -------------------------------------------------------------------------


def device(slot: int, vendor: int, dev: int, qdev_id: str, **extra: Any) -> dict[str, Any]:
    return {"bus": extra.pop("bus", 0), "slot": slot, "function": 0, "qdev_id": qdev_id,
            "id": {"vendor": vendor, "device": dev}, **extra}  # fmt: skip


def root_port(
    slot: int, qdev_id: str, secondary: int, below: list[dict[str, Any]]
) -> dict[str, Any]:
    bridge = {
        "bus": {"number": 0, "secondary": secondary, "subordinate": secondary},
        "devices": below,
    }
    return device(slot, 0x1B36, 0x000C, qdev_id, pci_bridge=bridge)


OURS = device(
    0, 0x1DE5, 0x0001, "hostdev0", bus=3,
    regions=[{"bar": 0, "size": 4096, "type": "memory"},
             {"bar": 2, "size": 1 << 20, "type": "memory"}],
)  # fmt: skip
QUERY_PCI = [{"bus": 0, "devices": [
    device(0, 0x8086, 0x29C0, ""),
    root_port(1, "pci.1", 1, []),  # an empty spare port: no "devices" below is fine too
    root_port(1, "pci.3", 3, [OURS]),
    device(31, 0x8086, 0x2918, ""),
]}]  # fmt: skip


def test_functions_behind_root_ports_are_found() -> None:
    found = matching(QUERY_PCI, 0x1DE5, 0x0001)
    assert len(found) == 1
    ours = found[0]
    assert (ours.bus, ours.qdev_id, ours.bridges) == (3, "hostdev0", ("pci.3",))
    assert ours.bar_sizes == {0: 4096, 2: 1 << 20}
    assert str(ours) == "03:00.0 1de5:0001 hostdev0 behind pci.3"


def test_every_function_is_listed_once_bridges_included() -> None:
    assert [f.qdev_id or f"{f.slot}" for f in functions(QUERY_PCI)] == [
        "0", "pci.1", "pci.3", "hostdev0", "31",
    ]  # fmt: skip
    assert matching(QUERY_PCI, 0x1DE5, 0x0002) == []


# -- virsh's errors --------------------------------------------------------------------

IN_USE = (
    "error: Failed to start domain 'hx-b'\nerror: Requested operation is not valid: mediated "
    f"device /sys/bus/mdev/devices/{UUID} is in use by driver QEMU, domain hx-a\n"
)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (IN_USE, ErrorKind.IN_USE),
        ("error: vfio: Device or resource busy", ErrorKind.IN_USE),
        ("error: failed to get domain 'hx-c'\n", ErrorKind.NOT_FOUND),
        ("error: Domain not found: no domain with matching name 'hx-c'", ErrorKind.NOT_FOUND),
        ("error: internal error: QEMU unexpectedly closed the monitor", ErrorKind.OTHER),
    ],
)
def test_classify(message: str, kind: ErrorKind) -> None:
    assert classify(message) is kind


def test_the_holder_libvirt_names() -> None:
    assert holder(IN_USE) == "hx-a"
    assert holder("error: vfio: Device or resource busy") is None


def fake_run(result: subprocess.CompletedProcess[str] | None) -> Any:
    def run(argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        assert argv[:3] == ["virsh", "-c", "qemu:///system"]
        assert options["timeout"] == 7
        if result is None:
            raise subprocess.TimeoutExpired(argv, options["timeout"])
        return result

    return run


def test_virsh_failures_and_timeouts_are_virsh_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = subprocess.CompletedProcess(["virsh"], 1, "", IN_USE)
    monkeypatch.setattr(subprocess, "run", fake_run(failed))
    with pytest.raises(VirshError) as refused:
        virsh("start", "hx-b", timeout=7)
    assert (refused.value.status, refused.value.kind) == (1, ErrorKind.IN_USE)
    assert "start hx-b` exited 1" in str(refused.value)
    monkeypatch.setattr(subprocess, "run", fake_run(None))
    with pytest.raises(VirshError) as hung:
        virsh("detach-device", "hx-c", "/tmp/h.xml", timeout=7)
    assert (hung.value.status, hung.value.kind) == (None, ErrorKind.TIMEOUT)
    assert "timed out" in str(hung.value)


def test_qmp_goes_through_libvirts_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, ...]] = []

    def fake_virsh(*args: str, timeout: float, uri: str) -> str:
        asked.append((uri, *args))
        return '{"return":{"status":"running"},"id":"libvirt-12"}'

    monkeypatch.setattr(virsh_mod, "virsh", fake_virsh)
    assert virsh_mod.qmp("hx-a", "query-status") == {"status": "running"}
    assert asked == [
        ("qemu:///system", "qemu-monitor-command", "hx-a", '{"execute": "query-status"}')
    ]
