# SPDX-License-Identifier: MIT
"""libvirt domains with our mdev as a hostdev, checked through libvirt's own interfaces
(virsh, its XML, QMP passed through `qemu-monitor-command`), in an L1 with our module loaded.

    report = run_checks(Path("/var/tmp/hx"))   # JSON-able: results, seconds, timings, ...

Each check is named "<step>.<what>" (see TITLES) and timed; a check whose prerequisite broke
is reported as not run. Every domain the checks define is destroyed and undefined afterwards,
and the mdev removed, whatever broke.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.core.checks import CheckError, equal, expect, poll_for
from harness.mgmt.domain_xml import (
    NATIVE_PCIE_HOTPLUG,
    DirectBoot,
    DomainSpec,
    DomainType,
    domain_xml,
    hostdev_xml,
    hostdevs,
)
from harness.mgmt.l2_watch import CMDLINE, ours_seen, write_initramfs
from harness.mgmt.libvirt_qemu import LibvirtQemu
from harness.mgmt.query_pci import PciFunction, functions, matching
from harness.mgmt.removal import Removal
from harness.mgmt.virsh import ErrorKind, VirshError, holder, state, virsh
from harness.nested.checks import Results
from harness.nested.qemu import l1_accelerator, qemu_version
from harness.nested.run import create_mdev, remove_mdev
from harness.nested.step1_qemu import check_vfio_files
from harness.refdev import contract as c
from harness.refdev import registers as r

TITLES = {
    "1": "libvirt defines and starts a domain with our mdev as a hostdev",
    "2": "the guest's PCI view, through QMP via libvirt",
    "3": "libvirt gives the mdev to one running domain at a time",
    "4": "hot-plug with `virsh attach-device --live`",
    "5": "removing the mdev while libvirt's QEMU holds it: REQ asks QEMU for the device",
    "6": "unplug, honoured by a guest OS: detach-device, and removal through REQ",
}
PREFIX = "vfio-harness"
APPEAR_S = 15.0  # a hot-plugged function shows in query-pci at once; this is generous
REQ_WAIT_S = 20.0  # the vfio core sends REQ at once, then every 10 s
REMOVE_DONE_S = 30.0
DETACH_GRACE_S = 5.0  # after detach-device returns: does the hostdev go, late?
L2_BOOT_S = 300.0  # a guest OS: about 10 s on nested KVM, 2 minutes under TCG in TCG
UNPLUG_S = 30.0  # pciehp powers the slot off 5 s after the attention button
# A slot on pcie.0 itself: a device there cannot be hot-unplugged, so QEMU answers REQ's
# unplug request with a warning in its log, where a root port's slot would just wait for
# a guest that never acknowledges.
FIXED_SLOT = 5

T = TypeVar("T")


@dataclass
class Domains:
    """The domains the checks define; cleanup() leaves none behind."""

    workdir: Path
    domain_type: DomainType
    defined: list[str] = field(default_factory=list)

    def define(
        self,
        role: str,
        mdevs: Sequence[str] = (),
        fixed_slot: int | None = None,
        boot: DirectBoot | None = None,
        qemu_args: Sequence[str] = (),
    ) -> str:
        spec = DomainSpec(
            f"{PREFIX}-{role}",
            self.domain_type,
            mdevs=mdevs,
            fixed_slot=fixed_slot,
            boot=boot,
            qemu_args=qemu_args,
        )
        path = self.workdir / f"{spec.name}.xml"
        path.write_text(domain_xml(spec))
        self.defined.append(spec.name)
        virsh("define", str(path))
        return spec.name

    def cleanup(self) -> list[str]:
        problems = []
        for name in reversed(self.defined):
            with contextlib.suppress(VirshError):  # "domain is not running" is fine
                virsh("destroy", name)
            try:
                virsh("undefine", name)
            except VirshError as err:
                if err.kind is not ErrorKind.NOT_FOUND:
                    problems.append(str(err))
        return problems


@dataclass
class Context:
    """What the checks share."""

    domains: Domains
    uuid: str
    group: str
    timings: dict[str, float] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)  # what was observed, for the report
    names: dict[str, str] = field(default_factory=dict)  # role -> domain name
    alias: str = ""
    extra_mdevs: list[str] = field(default_factory=list)  # made by a check, removed at the end

    def timed(self, what: str, action: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return action()
        finally:
            self.timings[what] = round(time.monotonic() - started, 2)

    def hostdev_file(self) -> Path:
        """Our mdev's <hostdev> as a file, for attach-device and detach-device."""
        path = self.domains.workdir / "hostdev.xml"
        path.write_text(hostdev_xml(self.uuid))
        return path


def ours(qemu: LibvirtQemu) -> list[PciFunction]:
    return matching(qemu.query_pci(), r.PCI_VENDOR_ID, r.PCI_DEVICE_ID)


def our_function(qemu: LibvirtQemu, timeout: float = 0.0) -> PciFunction:
    """Our one function in the domain's query-pci, with the contract's BAR sizes."""
    found = poll_for(lambda: ours(qemu), timeout)
    expect(
        len(found) == 1,
        f"{qemu.domain}: query-pci lists {len(found)} functions "
        f"{r.PCI_VENDOR_ID:04x}:{r.PCI_DEVICE_ID:04x}, expected 1; it lists "
        f"{[str(f) for f in functions(qemu.query_pci())]}",
    )
    function = found[0]
    bars = {0: c.BAR0_SIZE, 2: c.SMALL.mem_size}
    equal(dict(function.bar_sizes), bars, f"{qemu.domain}: BAR sizes in QEMU's query-pci")
    return function


def running(name: str) -> None:
    equal(state(name), "running", f"state of domain {name}")


# -- 1, 2: one domain with the mdev -------------------------------------------------------


def check_define_start(x: Context) -> None:
    x.names["a"] = x.timed("define_s", lambda: x.domains.define("a", [x.uuid]))
    x.timed("start_s", lambda: virsh("start", x.names["a"]))
    running(x.names["a"])


def check_dumpxml(x: Context) -> None:
    devices = hostdevs(virsh("dumpxml", x.names["a"]))
    equal([d.uuid for d in devices], [x.uuid], "mdev hostdevs in `virsh dumpxml`")
    expect(bool(devices[0].alias), f"libvirt gave the running hostdev no alias: {devices[0]}")
    x.alias = devices[0].alias or ""
    x.seen["hostdev_a"] = str(devices[0])


def check_qemu_holds_group(x: Context) -> None:
    """The QEMU libvirt started opened the mdev through VFIO (container, group, device fd)."""
    check_vfio_files(LibvirtQemu(x.names["a"]), x.group)


def check_pci_view(x: Context) -> None:
    function = our_function(LibvirtQemu(x.names["a"]))
    equal(function.qdev_id, x.alias, "QEMU's id of our function (libvirt's hostdev alias)")
    x.seen["pci_a"] = str(function)


# -- 3: one domain at a time --------------------------------------------------------------


def check_second_refused(x: Context) -> None:
    x.names["b"] = x.domains.define("b", [x.uuid])
    try:
        virsh("start", x.names["b"])
    except VirshError as err:
        refusal = err
    else:
        raise CheckError(f"a second domain started with the mdev {x.names['a']} runs with")
    x.seen["refusal"] = refusal.message.strip()
    equal(refusal.kind, ErrorKind.IN_USE, f"why libvirt refused ({refusal.message.strip()!r})")
    expect(x.uuid in refusal.message, f"the refusal does not name the mdev: {refusal.message!r}")
    named = holder(refusal.message)
    if named is not None:
        equal(named, x.names["a"], "the domain the refusal names as the mdev's holder")
    equal(state(x.names["b"]), "shut off", "state of the refused domain")
    running(x.names["a"])
    our_function(LibvirtQemu(x.names["a"]))


def check_destroy_frees(x: Context) -> None:
    pid = LibvirtQemu(x.names["a"]).pid()
    x.timed("destroy_s", lambda: virsh("destroy", x.names["a"]))
    expect(
        poll_for(lambda: not Path(f"/proc/{pid}").exists(), 10.0),
        f"QEMU {pid} of {x.names['a']} still runs 10 s after `virsh destroy`",
    )
    x.timed("start_second_s", lambda: virsh("start", x.names["b"]))
    running(x.names["b"])
    x.seen["pci_b"] = str(our_function(LibvirtQemu(x.names["b"])))
    virsh("destroy", x.names["b"])


# -- 4: hot-plug --------------------------------------------------------------------------


def check_hotplug(x: Context) -> None:
    name = x.names["c"] = x.domains.define("c")
    x.timed("start_empty_s", lambda: virsh("start", name))
    qemu = LibvirtQemu(name)
    equal(ours(qemu), [], f"{name}: our function before attach-device")
    x.timed("attach_s", lambda: virsh("attach-device", name, str(x.hostdev_file()), "--live"))
    function = our_function(qemu, APPEAR_S)
    devices = hostdevs(virsh("dumpxml", name))
    equal([d.uuid for d in devices], [x.uuid], f"{name}: mdev hostdevs after attach-device")
    equal(function.qdev_id, devices[0].alias, "QEMU's id of the plugged function (its alias)")
    x.seen["pci_c"] = str(function)


def _hostdev_uuids(domain: str) -> list[str]:
    return [d.uuid for d in hostdevs(virsh("dumpxml", domain))]


def observe_detach(x: Context) -> dict[str, Any]:
    """`virsh detach-device --live`, recorded rather than judged: on q35 the function sits
    on a PCIe slot, whose unplug a guest must acknowledge, and these domains run no OS."""
    name = x.names["c"]
    started = time.monotonic()
    try:
        answer = virsh("detach-device", name, str(x.hostdev_file()), "--live", timeout=90).strip()
        status = 0
    except VirshError as err:
        answer, status = str(err), err.status if err.status is not None else -1
    seen: dict[str, Any] = {
        "virsh_status": status,
        "virsh_says": answer,
        "seconds": round(time.monotonic() - started, 2),
    }
    # Past libvirt's own wait for DEVICE_DELETED: does the hostdev go, late?
    deadline = time.monotonic() + DETACH_GRACE_S
    while time.monotonic() < deadline and x.uuid in _hostdev_uuids(name):
        time.sleep(0.5)
    qemu = LibvirtQemu(name)
    seen["still_in_dumpxml"] = x.uuid in _hostdev_uuids(name)
    seen["still_in_query_pci"] = bool(ours(qemu))
    seen["qemu_still_holds_group"] = f"/dev/vfio/{x.group}" in qemu.open_files()
    return seen


# -- 5: REQ -------------------------------------------------------------------------------


def check_req_reaches_qemu(x: Context) -> None:
    name = x.names["d"] = x.domains.define("d", [x.uuid], fixed_slot=FIXED_SLOT)
    virsh("start", name)
    qemu = LibvirtQemu(name)
    our_function(qemu)
    log_before = len(qemu.log())
    with Removal(x.uuid) as removal:

        def answered() -> list[str]:
            new = qemu.log()[log_before:].splitlines()
            return [line for line in new if x.uuid in line]

        lines = x.timed("req_answer_s", lambda: poll_for(answered, REQ_WAIT_S))
        x.seen["req_qemu_log"] = lines
        expect(
            not removal.finished(),
            f"removing the mdev finished while {name}'s QEMU held it: {removal.outcome()}",
        )
        expect(
            bool(lines),
            f"in {REQ_WAIT_S:.0f} s of a blocked removal, {name}'s QEMU logged nothing about "
            f"the device: its REQ eventfd was not signalled, or QEMU ignored it",
        )
        virsh("destroy", name)
        expect(
            removal.wait(REMOVE_DONE_S),
            f"removal still blocked {REMOVE_DONE_S:.0f} s after `virsh destroy` {name}",
        )
        equal(removal.outcome(), "removed", "writing the mdev's remove attribute")
        x.timings["remove_blocked_s"] = removal.seconds()


# -- 6: unplug, honoured by a guest OS ----------------------------------------------------


def _console(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _guest_sees(console: Path, count: int, timeout: float) -> bool:
    """Whether the guest's last report is `count` of our functions, within `timeout`."""
    return bool(poll_for(lambda: ours_seen(_console(console))[-1:] == [count], timeout, 0.2))


def l1_kernel() -> Path:
    """The kernel L1 runs, for the guest (Debian keeps it in /boot)."""
    release = Path("/proc/sys/kernel/osrelease").read_text().strip()
    return Path("/boot") / f"vmlinuz-{release}"


def check_unplug_honoured(x: Context) -> None:
    """A guest whose pciehp acknowledges unplug requests: `detach-device` takes the mdev out
    of the running domain, `attach-device` brings it back, and removing the mdev through sysfs
    (the vfio core sends the device's REQ; QEMU asks the guest to unplug) completes while the
    domain runs on."""
    uuid, group = create_mdev(c.SMALL)
    x.extra_mdevs.append(uuid)
    # QEMU runs as libvirt's user and writes the console log here itself.
    work = x.domains.workdir / "l2"
    work.mkdir(exist_ok=True)
    work.chmod(0o777)
    console = work / "console.log"
    initramfs = write_initramfs(work / "l2-initramfs.cpio")
    boot = DirectBoot(l1_kernel(), initramfs, CMDLINE, console)
    name = x.names["e"] = x.domains.define("e", [uuid], boot=boot, qemu_args=NATIVE_PCIE_HOTPLUG)
    virsh("start", name)
    qemu = LibvirtQemu(name)
    booted = x.timed("l2_boot_s", lambda: _guest_sees(console, 1, L2_BOOT_S))
    expect(
        booted, f"{name}'s guest did not report our function in {L2_BOOT_S:.0f} s: {_tail(console)}"
    )
    hostdev = work / "hostdev-e.xml"
    hostdev.write_text(hostdev_xml(uuid))

    x.timed("detach_s", lambda: virsh("detach-device", name, str(hostdev), "--live", timeout=90))
    gone = x.timed(
        "detach_gone_s", lambda: poll_for(lambda: uuid not in _hostdev_uuids(name), UNPLUG_S)
    )
    expect(gone, f"{name} still lists the mdev {UNPLUG_S:.0f} s after detach-device")
    expect(
        _guest_sees(console, 0, UNPLUG_S), f"the guest still sees our function: {_tail(console)}"
    )
    expect(not ours(qemu), f"{name}'s query-pci still lists our function after detach-device")
    expect(
        f"/dev/vfio/{group}" not in qemu.open_files(),
        f"{name}'s QEMU still holds /dev/vfio/{group} after detach-device",
    )

    x.timed("reattach_s", lambda: virsh("attach-device", name, str(hostdev), "--live"))
    expect(
        _guest_sees(console, 1, UNPLUG_S),
        f"the guest did not see our function come back: {_tail(console)}",
    )
    our_function(qemu, APPEAR_S)

    with Removal(uuid) as removal:
        done = x.timed("req_unplug_s", lambda: removal.wait(UNPLUG_S))
        expect(
            done,
            f"removing the mdev still blocked after {UNPLUG_S:.0f} s: the guest did not "
            f"acknowledge the unplug QEMU asked for on the device's REQ ({_tail(console)})",
        )
        equal(removal.outcome(), "removed", "writing the mdev's remove attribute")
    running(name)
    expect(uuid not in _hostdev_uuids(name), f"{name} still lists the removed mdev")
    expect(
        _guest_sees(console, 0, UNPLUG_S), f"the guest still sees our function: {_tail(console)}"
    )
    x.seen["l2_reports"] = ours_seen(_console(console))


def _tail(console: Path, lines: int = 5) -> str:
    return " | ".join(_console(console).strip().splitlines()[-lines:])


# -- the run ------------------------------------------------------------------------------


def run_checks(workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    accelerator = l1_accelerator()
    report: dict[str, Any] = {
        "qemu_l1": qemu_version(),
        "libvirt": virsh("version").strip().splitlines(),
        "domain_type": "kvm" if accelerator == "kvm" else "qemu",
    }
    uuid, group = create_mdev(c.SMALL)
    report["mdev"] = {"uuid": uuid, "group": group}
    domains = Domains(workdir, report["domain_type"])
    x = Context(domains, uuid, group)
    results = Results(titles=TITLES)
    run = results.run
    try:
        run("1.define_start", lambda: check_define_start(x))
        run("1.dumpxml_hostdev", lambda: check_dumpxml(x), ["1.define_start"])
        run("1.qemu_opened_vfio", lambda: check_qemu_holds_group(x), ["1.define_start"])
        run("2.query_pci", lambda: check_pci_view(x), ["1.dumpxml_hostdev"])
        run("3.second_refused", lambda: check_second_refused(x), ["1.define_start"])
        run("3.destroy_frees", lambda: check_destroy_frees(x), ["3.second_refused"])
        # Whatever step 3 left running would hold the mdev.
        report["cleanup"] = domains.cleanup()
        domains.defined.clear()
        if run("4.hotplug", lambda: check_hotplug(x)):
            report["detach"] = observe_detach(x)
        report["cleanup"] += domains.cleanup()
        domains.defined.clear()
        run("5.req_reaches_qemu", lambda: check_req_reaches_qemu(x))
        report["cleanup"] += domains.cleanup()
        domains.defined.clear()
        run("6.unplug_honoured", lambda: check_unplug_honoured(x))
    except Exception:  # the checks' own failures are results: this is the run's bug
        report["setup"] = traceback.format_exc()
    finally:
        report["cleanup"] = report.get("cleanup", []) + domains.cleanup()
        for made in (uuid, *x.extra_mdevs):  # steps 5 and 6 remove theirs
            remove_mdev(made)
        report["results"] = results.results
        report["seconds"] = results.seconds
        report["timings"] = x.timings
        report["seen"] = x.seen
        report["wall_s"] = round(time.monotonic() - started, 2)
    return report
