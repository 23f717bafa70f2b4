# SPDX-License-Identifier: MIT
"""The pure parts of harness.mgmt.libvirt_migration: the migrating domain's XML (loader,
<qemu:commandline>, <qemu:override>), the destination's XML made from the source's, and
libvirt's and QEMU's numbers. The texts are as libvirt 11.3 and QEMU 10.0 wrote them in the
trixie-libvirt L1."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.mgmt.domain_xml import QEMU_NS, DomainSpec, domain_xml, hostdevs
from harness.mgmt.libvirt_migration import (
    DOMAIN,
    completed_info,
    destination_xml,
    device_bytes_read,
    job_info,
    migrating_domain,
    parse_jobinfo,
)

SOURCE = "45cf16bf-cbd0-4ee2-b1ca-13816a4c5dfa"
TARGET = "26c15448-176f-4f34-9923-3f3b3e110c65"
Q = f"{{{QEMU_NS}}}"

JOBINFO = """\
Job type:         Completed
Operation:        Outgoing migration
Time elapsed:     9541         ms
Time elapsed w/o network: 9523         ms
Data processed:   1.373 MiB
Data remaining:   0.000 B
Data total:       128.188 MiB
Memory processed: 1.373 MiB
Memory remaining: 0.000 B
Memory total:     128.188 MiB
Memory bandwidth: 2.129 MiB/s
Dirty rate:       0            pages/s
Page size:        4096         bytes
Iteration:        5
Postcopy requests: 0
Constant pages:   32815
Normal pages:     1
Normal data:      4.000 KiB
Total downtime:   524          ms
Downtime w/o network: 506          ms
Setup time:       19           ms
"""

# `virsh dumpxml --migratable` of a domain migrating_domain() defined, cut down.
MIGRATABLE = f"""\
<domain type='qemu' xmlns:qemu='{QEMU_NS}'>
  <name>{DOMAIN}</name>
  <uuid>bf832716-4343-484b-8cb7-2321d8466021</uuid>
  <devices>
    <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci' display='off'>
      <source>
        <address uuid='{SOURCE}'/>
      </source>
      <alias name='ua-mdev0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </hostdev>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qtest'/>
    <qemu:arg value='unix:/var/tmp/x/source/qtest.sock'/>
    <qemu:arg value='-D'/>
    <qemu:arg value='/var/tmp/x/source/trace.log'/>
  </qemu:commandline>
  <qemu:override>
    <qemu:device alias='ua-mdev0'>
      <qemu:frontend>
        <qemu:property name='enable-migration' type='string' value='on'/>
      </qemu:frontend>
    </qemu:device>
  </qemu:override>
</domain>
"""


def test_migrating_domain_runs_the_halting_firmware_with_migration_on() -> None:
    root = ET.fromstring(
        migrating_domain(SOURCE, Path("/w/halt.bin"), Path("/w/s/qtest.sock"), Path("/w/s/t.log"))
    )
    assert root.get("type") == "qemu"  # TCG: MSIs land in RAM, where qtest reads them
    loader = root.find("os/loader")
    assert loader is not None and (loader.get("type"), loader.text) == ("rom", "/w/halt.bin")
    hostdev = root.find("devices/hostdev")
    assert hostdev is not None
    alias = hostdev.find("alias")
    assert alias is not None and alias.get("name") == "ua-mdev0"
    address = hostdev.find("address")
    assert address is not None and (address.get("bus"), address.get("slot")) == ("0", "5")
    assert not root.findall("devices/controller[@model='pcie-root-port']")
    args = [a.get("value") for a in root.iterfind(f"{Q}commandline/{Q}arg")]
    assert args == [
        "-qtest",
        "unix:/w/s/qtest.sock",
        "-qtest-log",
        "/dev/null",
        "-trace",
        "enable=vfio_*",
        "-D",
        "/w/s/t.log",
    ]
    device = root.find(f"{Q}override/{Q}device")
    assert device is not None and device.get("alias") == "ua-mdev0"
    prop = device.find(f"{Q}frontend/{Q}property")
    assert prop is not None
    # enable-migration is OnOffAuto: type='bool' makes QEMU refuse the device.
    assert (prop.get("name"), prop.get("type"), prop.get("value")) == (
        "enable-migration",
        "string",
        "on",
    )


def test_domain_without_properties_has_no_override_and_no_aliases() -> None:
    root = ET.fromstring(domain_xml(DomainSpec("hx-a", "qemu", mdevs=(SOURCE,))))
    assert root.find(f"{Q}override") is None
    assert root.find("devices/hostdev/alias") is None
    assert root.find("os/loader") is None


def test_destination_xml_swaps_the_mdev_and_the_sides_files_only() -> None:
    replace = {"/var/tmp/x/source/qtest.sock": "/var/tmp/x/target/qtest.sock"}
    replace["/var/tmp/x/source/trace.log"] = "/var/tmp/x/target/trace.log"
    out = destination_xml(MIGRATABLE, {SOURCE: TARGET}, replace)
    root = ET.fromstring(out)
    assert root.findtext("uuid") == "bf832716-4343-484b-8cb7-2321d8466021"
    found = hostdevs(out)
    assert [(h.uuid, h.pci) for h in found] == [(TARGET, "0000:00:05.0")]
    args = [a.get("value") for a in root.iterfind(f"{Q}commandline/{Q}arg")]
    assert args == [
        "-qtest",
        "unix:/var/tmp/x/target/qtest.sock",
        "-D",
        "/var/tmp/x/target/trace.log",
    ]
    assert root.find(f"{Q}override/{Q}device[@alias='ua-mdev0']") is not None
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in out


def test_jobinfo_lines_are_split_at_the_first_colon() -> None:
    fields = parse_jobinfo(JOBINFO)
    assert fields["Operation"] == "Outgoing migration"
    assert fields["Time elapsed w/o network"] == "9523         ms"
    assert fields["Normal pages"] == "1"


def test_completed_jobinfo_as_migration_info() -> None:
    info = completed_info(JOBINFO, ok=True)
    assert info.status == "completed" and info.finished
    assert (info.total_ms, info.downtime_ms, info.setup_ms) == (9541, 524, 19)
    assert info.ram == {"normal": 1, "duplicate": 32815, "dirty-sync-count": 5}
    assert info.vfio_bytes is None and info.error is None


def test_failed_migration_keeps_virshs_message() -> None:
    info = completed_info("", ok=False, error="error: operation failed: job 'migration out'")
    assert info.status == "failed" and info.ram == {} and info.downtime_ms is None
    assert info.error is not None and "job 'migration out'" in info.error


def test_device_bytes_are_summed_from_the_save_block_events() -> None:
    trace = (
        "1142@1796642239.189106:vfio_save_block  (45cf) data_size 1048576\n"
        "1142@1796642239.189525:vfio_save_iterate  (45cf) precopy initial size 440 "
        "precopy dirty size 0\n"
        "1142@1796642239.252618:vfio_save_block  (45cf) data_size 440\n"
        "1142@1796642239.307754:vfio_save_block_precopy_empty_hit  (45cf)\n"
    )
    assert device_bytes_read(trace) == 1048576 + 440
    assert device_bytes_read("") == 0


def test_a_running_job_is_active_with_its_iterations() -> None:
    running = """\
Job type:         Unbounded
Operation:        Outgoing migration
Time elapsed:     6481         ms
Iteration:        3
Constant pages:   32700
Normal pages:     120
"""
    info = job_info(running)
    assert info.status == "active" and not info.finished
    assert info.ram == {"normal": 120, "duplicate": 32700, "dirty-sync-count": 3}
    assert job_info("Job type:         None\n").status == "none"
