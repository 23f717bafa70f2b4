# SPDX-License-Identifier: MIT
"""The nested end-to-end steps (harness/nested/steps.py: VFIO calls in QEMU's trace, the
guest's PCI view, trapped vs mmap-ed BARs, DMA with pins and unmap, MSI, INTx, the error
IRQ) against a QEMU that libvirt started, from a domain XML with our mdev as a hostdev.

    report = run_libvirt_steps(Path("/var/tmp/hx-steps"))   # JSON-able, never raises

The domain is a qtest domain (qtest_domain.py): qtest plays the guest driver, and libvirt's
own interfaces answer the QEMU side of each check (QMP via `virsh qemu-monitor-command`, the
pid file and /proc for QEMU's descriptors, the trace QEMU writes). Steps 1-5 are the very
checks test_nested.py runs on a QEMU of our own, so a difference is libvirt's doing: its
private /dev, its user and cgroup, its sandbox, its device properties.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from pathlib import Path
from typing import Any

from harness.core.checks import attempt
from harness.mgmt.domain_xml import hostdevs
from harness.mgmt.libvirt_qemu import LibvirtQemu
from harness.mgmt.qtest_domain import (
    QTEST_SOCKET,
    TRACE_LOG,
    QtestSocket,
    alive,
    qtest_domain,
    qtest_scenario,
    side_dir,
)
from harness.mgmt.virsh import VirshError, virsh
from harness.nested.checks import Results
from harness.nested.migration import halting_firmware
from harness.nested.qemu import qemu_version
from harness.nested.run import create_mdev, remove_mdev, tail
from harness.nested.steps import run_steps
from harness.refdev import contract as c

DOMAIN = "vfio-harness-steps"


def run_libvirt_steps(workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"variant": "libvirt-qtest", "qemu_l1": qemu_version()}
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    directory = side_dir(workdir, "domain")
    firmware = halting_firmware(workdir / "halt.bin")
    firmware.chmod(0o644)
    qemu = LibvirtQemu(DOMAIN, directory / TRACE_LOG)
    listener = QtestSocket(directory / QTEST_SOCKET)
    uuid = ""
    defined = False
    try:
        report["libvirt"] = virsh("version").strip().splitlines()
        report["domain_type"] = "qemu"
        uuid, group = create_mdev(c.SMALL)
        report["mdev"] = {"uuid": uuid, "group": group, "type": c.SMALL.type_id}
        xml = workdir / "domain.xml"
        trace = directory / TRACE_LOG
        xml.write_text(qtest_domain(DOMAIN, uuid, firmware, listener.path, trace, shmem_mib=1))
        virsh("define", str(xml))
        defined = True
        virsh("start", DOMAIN)
        client = listener.accept(alive(qemu))
        alias = hostdevs(virsh("dumpxml", DOMAIN))[0].alias
        report["hostdev_alias"] = alias
        scenario = qtest_scenario(client, qemu, uuid, group, alias or "")
        report["seconds_machine_ready"] = round(time.monotonic() - started, 2)
        results = run_steps(scenario)
        report["results"] = results.results
        report["seconds"] = results.seconds
    except Exception:
        report["setup"] = traceback.format_exc()
        report.setdefault("results", Results().results)
    finally:
        report["trace_tail"] = tail(qemu.trace())
        report["qemu_stderr"] = tail(qemu.log(), 20)
        problems: list[str] = []  # each step runs whatever the one before hit
        attempt(problems, f"close {listener.path}", listener.close)
        if defined:
            attempt(problems, f"undefine {DOMAIN}", _destroy_and_undefine)
        if uuid:
            attempt(problems, f"remove mdev {uuid}", lambda: remove_mdev(uuid))
        report["cleanup"] = problems
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report


def _destroy_and_undefine() -> None:
    with contextlib.suppress(VirshError):  # not running any more
        virsh("destroy", DOMAIN)
    virsh("undefine", DOMAIN)
