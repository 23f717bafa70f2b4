# SPDX-License-Identifier: MIT
"""mdevctl against our sysfs layer, in an L1 with systemd, udev and mdevctl (issue 19 part 2).

    report = run_checks(Driver.ours("/tmp/vfio_harness_mdev.ko"))   # loaded, as tests/vm/l1.py does
    report = run_checks(Driver("/tmp/mtty.ko", "mtty", "mtty", "mtty-2", "mtty-1"))

Nothing here is particular to our driver: any mdev driver's parent and two of its types (one
of them may be given twice) go through the same steps.

After every step sysfs must hold exactly the devices the step leaves, and mdevctl's lists and
types must agree with our sysfs view (harness.mdev.mdevctl). The module reloads use the path
given, so the autostart is checked against the module the test built. Everything the checks
create (definitions, devices, the runtime udev rule) is removed at the end whatever failed;
what could not be is listed under "cleanup". The report is JSON-able: {"results": {check: "ok"
| what broke}, "seconds", "timings", "packaged_rule", "mdevctl_version", "driver", "cleanup",
"wall_s"}. The driver must offer three devices of its --auto type at once when both types are
the same (a vendor's one type), else two of it and one of the other.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid as uuid_mod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.checks import CheckError, equal, expect
from harness.mdev import MdevSysfs
from harness.mdev.mdevctl import (
    Definition,
    MdevctlView,
    Start,
    SysfsDevice,
    disagreements,
    expected_view,
    read_sysfs,
)
from harness.mgmt import udev_rule
from harness.nested.checks import Results
from harness.refdev import contract

STEP_TITLES = {
    "1": "before anything is defined, mdevctl and sysfs agree",
    "2": "define (--auto and manual) persists without creating a device",
    "3": "start creates the devices; starting a running one is refused",
    "4": "a device created through sysfs is listed active, not defined",
    "5": "stop removes the devices and keeps their definitions",
    "6": "module reload under the packaged udev rule, as shipped",
    "7": "module reload under a runtime copy of the rule calling the installed mdevctl",
    "8": "undefine leaves nothing behind",
}
PACKAGED_RULE_CHECK = "6.packaged_rule_autostarts"
CONFIG_DIR = Path("/etc/mdevctl.d")
AUTOSTART_DEADLINE_S = 20.0
POLL_S = 0.05
SETTLE = ["udevadm", "settle", "--timeout=60"]


def command(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def must(args: list[str]) -> str:
    """stdout of a command that has to succeed; its failure is the check's."""
    done = command(args)
    if done.returncode != 0:
        raise CheckError(f"`{' '.join(args)}` exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def mdevctl_view() -> MdevctlView:
    return MdevctlView.parse(
        must(["mdevctl", "list"]),
        must(["mdevctl", "list", "--dumpjson"]),
        must(["mdevctl", "list", "--defined"]),
        must(["mdevctl", "list", "--defined", "--dumpjson"]),
        must(["mdevctl", "types", "--dumpjson"]),
    )


def journal_since(epoch: float, tag: str = "mdevctl") -> list[str]:
    """What the udev rule logged (it pipes mdevctl's output to `logger -t mdevctl`)."""
    command(["journalctl", "--sync"])  # logger's lines may still be queued in journald
    since = f"--since=@{int(epoch) - 1}"
    done = command(["journalctl", "--no-pager", "-o", "cat", "-t", tag, since])
    return done.stdout.splitlines()[-5:]


@dataclass(frozen=True)
class Driver:
    """The mdev driver under test, loaded before the checks run."""

    module: str  # the .ko the reload steps insmod again
    name: str  # its name in /sys/module, for rmmod
    parent: str  # its parent device (/sys/class/mdev_bus/PARENT)
    auto_type: str  # the type defined --auto (also the one created through sysfs)
    manual_type: str  # the type defined for manual start

    @classmethod
    def ours(cls, module: str) -> Driver:
        return cls(
            module,
            contract.MODULE_NAME,
            contract.PARENT_NAME,
            contract.SMALL.type_id,
            contract.LARGE.type_id,
        )

    @classmethod
    def from_args(cls, args: list[str]) -> Driver:
        """`MODULE_KO` (ours) or `MODULE_KO NAME PARENT AUTO_TYPE MANUAL_TYPE`; a PARENT of
        "-" is the one parent that offers AUTO_TYPE (the driver must be loaded)."""
        if len(args) == 1:
            return cls.ours(args[0])
        if len(args) != 5:
            raise ValueError(f"expected MODULE_KO [NAME PARENT AUTO_TYPE MANUAL_TYPE], got {args}")
        module, name, parent, auto_type, manual_type = args
        if parent == "-":
            parent = MdevSysfs().find_type(auto_type).parent_name
        return cls(module, name, parent, auto_type, manual_type)


@dataclass
class Session:
    driver: Driver
    auto: Definition
    manual: Definition
    direct: str  # created through sysfs, never defined
    defined: dict[str, Definition] = field(default_factory=dict)  # what exists now
    timings: dict[str, float] = field(default_factory=dict)
    config_dir_existed: bool = True
    runtime_rule_written: bool = False

    @property
    def ours(self) -> tuple[str, ...]:
        return (self.auto.uuid, self.manual.uuid, self.direct)

    def running(self, *definitions: Definition) -> dict[str, SysfsDevice]:
        return {d.uuid: SysfsDevice(d.parent, d.mdev_type) for d in definitions}

    def agree(self, devices: dict[str, SysfsDevice], after: str) -> None:
        """sysfs holds exactly `devices`, and mdevctl shows what sysfs and the definitions say."""
        sysfs = read_sysfs(MdevSysfs())
        equal(dict(sysfs.devices), devices, f"devices in sysfs after {after}")
        differences = disagreements(expected_view(sysfs, self.defined.values()), mdevctl_view())
        expect(
            not differences,
            f"after {after}, mdevctl and sysfs disagree: " + "; ".join(differences),
        )

    def define(self, definition: Definition) -> None:
        auto = ["--auto"] if definition.start is Start.AUTO else []
        place = ["-u", definition.uuid, "-p", definition.parent, "-t", definition.mdev_type]
        must(["mdevctl", "define", *place, *auto])
        self.defined[definition.uuid] = definition

    def reload_module(self) -> float:
        """rmmod and insmod the driver; the time insmod returned (its parent is registered)."""
        must(["rmmod", self.driver.name])
        must(["insmod", self.driver.module])
        return time.monotonic()

    def stop_ours(self) -> None:
        for name in self.ours:
            if name in MdevSysfs().device_uuids():
                must(["mdevctl", "stop", "-u", name])

    # -- the steps ------------------------------------------------------------------------------

    def before(self) -> None:
        self.agree({}, "loading the module")

    def define_both(self) -> None:
        self.define(self.auto)
        self.define(self.manual)
        self.agree({}, "define")

    def start(self) -> None:
        must(["mdevctl", "start", "-u", self.auto.uuid])
        must(["mdevctl", "start", "-u", self.manual.uuid])
        self.agree(self.running(self.auto, self.manual), "start")

    def start_again(self) -> None:
        again = command(["mdevctl", "start", "-u", self.auto.uuid])
        equal(again.returncode, 1, f"exit status of a second start ({again.stderr.strip()!r})")
        self.agree(self.running(self.auto, self.manual), "a refused second start")

    def sysfs_created(self) -> None:
        parent, mdev_type = self.driver.parent, self.driver.auto_type
        MdevSysfs().create(mdev_type, self.direct, parent=parent)
        devices = self.running(self.auto, self.manual)
        devices[self.direct] = SysfsDevice(parent, mdev_type)
        self.agree(devices, "creating a device through sysfs")
        must(["mdevctl", "stop", "-u", self.direct])
        self.agree(self.running(self.auto, self.manual), "mdevctl stop of that device")

    def stop(self) -> None:
        must(["mdevctl", "stop", "-u", self.auto.uuid])
        must(["mdevctl", "stop", "-u", self.manual.uuid])
        self.agree({}, "stop")

    def packaged_rule(self) -> None:
        expect(not Path(udev_rule.RUNTIME).exists(), f"{udev_rule.RUNTIME} exists already")
        since = time.time()
        try:
            loaded = self.reload_module()
            must(SETTLE)  # the rule's RUN+= has run by the time udev's queue is empty
            self.timings["packaged_rule_settle_s"] = round(time.monotonic() - loaded, 3)
            back = self.auto.uuid in MdevSysfs().device_uuids()
            expect(
                back,
                f"the --auto device {self.auto.uuid} did not come back after the module reload "
                f"(udev settled; the rule logged: {journal_since(since)})",
            )
            self.agree(self.running(self.auto), "the module reload")
        finally:
            self.stop_ours()

    def runtime_rule(self) -> None:
        expect(not Path(udev_rule.RUNTIME).exists(), f"{udev_rule.RUNTIME} exists already")
        installed = shutil.which("mdevctl")
        expect(installed is not None, "no mdevctl on PATH")
        assert installed is not None
        packaged = Path(udev_rule.PACKAGED).read_text()
        Path(udev_rule.RUNTIME).parent.mkdir(parents=True, exist_ok=True)
        self.runtime_rule_written = True
        Path(udev_rule.RUNTIME).write_text(udev_rule.with_program(packaged, installed))
        try:
            must(["udevadm", "control", "--reload"])
            self.autostart()
        finally:
            self.drop_runtime_rule()

    def drop_runtime_rule(self) -> None:
        Path(udev_rule.RUNTIME).unlink(missing_ok=True)
        must(["udevadm", "control", "--reload"])
        self.runtime_rule_written = False

    def autostart(self) -> None:
        """Reload the module and wait for the --auto device, and only it, to come back."""
        since = time.time()
        loaded = self.reload_module()
        deadline = loaded + AUTOSTART_DEADLINE_S
        while self.auto.uuid not in MdevSysfs().device_uuids():
            expect(
                time.monotonic() < deadline,
                f"the --auto device {self.auto.uuid} did not come back within "
                f"{AUTOSTART_DEADLINE_S:.0f} s of insmod (the rule logged: {journal_since(since)})",
            )
            time.sleep(POLL_S)
        self.timings["autostart_s"] = round(time.monotonic() - loaded, 3)
        must(SETTLE)  # every event handled: had the manual device been started, it would be now
        self.agree(self.running(self.auto), "the module reload")

    def undefine(self) -> None:
        self.stop_ours()
        for definition in (self.auto, self.manual):
            must(["mdevctl", "undefine", "-u", definition.uuid])
            del self.defined[definition.uuid]
        left = sorted(str(p) for name in self.ours for p in CONFIG_DIR.glob(f"*/{name}"))
        equal(left, [], "definition files left after undefine")
        self.agree({}, "undefine")

    # -- cleaning up ----------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Remove what the checks made, without mdevctl (which may be what broke)."""
        problems: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:
                problems.append(f"{what}: {type(exc).__name__}: {exc}")

        if self.runtime_rule_written:
            attempt(f"remove {udev_rule.RUNTIME}", self.drop_runtime_rule)
        if not Path("/sys/module", self.driver.name).exists():
            attempt("insmod the driver again", lambda: must(["insmod", self.driver.module]))
        for name in self.ours:
            sysfs = MdevSysfs()
            if name in sysfs.device_uuids():
                attempt(f"remove device {name}", sysfs.device(name).remove)
            for path in CONFIG_DIR.glob(f"*/{name}"):
                attempt(f"remove {path}", path.unlink)
        parent_dir = CONFIG_DIR / self.driver.parent
        if not self.config_dir_existed and parent_dir.is_dir() and not any(parent_dir.iterdir()):
            attempt(f"remove {parent_dir}", parent_dir.rmdir)
        left = [name for name in self.ours if name in MdevSysfs().device_uuids()]
        left += [str(path) for name in self.ours for path in CONFIG_DIR.glob(f"*/{name}")]
        if self.runtime_rule_written and Path(udev_rule.RUNTIME).exists():
            left.append(udev_rule.RUNTIME)
        if left:
            problems.append(f"left behind: {', '.join(left)}")
        return problems


def packaged_rule_info() -> dict[str, Any]:
    """Which program the packaged rule runs and whether it is there (the known Debian bug)."""
    try:
        program = udev_rule.rule_program(Path(udev_rule.PACKAGED).read_text())
    except (OSError, udev_rule.RuleError) as exc:
        return {"path": udev_rule.PACKAGED, "error": str(exc)}
    exists = os.access(program, os.X_OK)
    return {"path": udev_rule.PACKAGED, "program": program, "program_exists": exists}


@contextmanager
def session(driver: Driver) -> Iterator[tuple[Session, list[str]]]:
    """A session with fresh UUIDs; its cleanup's problems land in the yielded list."""

    def fresh(mdev_type: str, start: Start) -> Definition:
        return Definition(str(uuid_mod.uuid4()), driver.parent, mdev_type, start)

    made = Session(
        driver,
        fresh(driver.auto_type, Start.AUTO),
        fresh(driver.manual_type, Start.MANUAL),
        str(uuid_mod.uuid4()),
        config_dir_existed=(CONFIG_DIR / driver.parent).exists(),
    )
    problems: list[str] = []
    try:
        yield made, problems
    finally:
        problems += made.cleanup()


def missing_capacity(driver: Driver) -> str | None:
    """What the driver lacks for the steps, which hold three devices at once (step 4): two
    of its --auto type and one of its manual type."""
    wanted = {driver.auto_type: 2}
    wanted[driver.manual_type] = wanted.get(driver.manual_type, 0) + 1
    parent = MdevSysfs().parent(driver.parent)
    short = []
    for mdev_type, count in wanted.items():
        free = parent.type(mdev_type).available_instances
        if free < count:
            short.append(f"{mdev_type}: {free} available, the steps need {count} at once")
    return f"parent {driver.parent}: " + "; ".join(short) if short else None


def run_checks(driver: Driver) -> dict[str, Any]:
    """The report; with "setup" instead of results when the driver cannot hold the steps'
    devices."""
    started = time.monotonic()
    lacking = missing_capacity(driver)
    if lacking is not None:
        return {"results": {}, "setup": lacking, "cleanup": [], "wall_s": 0.0}
    results = Results(titles=STEP_TITLES)
    version = command(["mdevctl", "--version"]).stdout.strip()
    with session(driver) as (s, cleanup_problems):
        results.run("1.agree_before", s.before)
        results.run("2.define", s.define_both)
        results.run("3.start", s.start, needs=["2.define"])
        results.run("3.start_again_refused", s.start_again, needs=["3.start"])
        results.run("4.sysfs_created_listed_active", s.sysfs_created, needs=["3.start"])
        results.run("5.stop", s.stop, needs=["3.start"])
        results.run(PACKAGED_RULE_CHECK, s.packaged_rule, needs=["5.stop"])
        results.run("7.runtime_rule_autostarts", s.runtime_rule, needs=["5.stop"])
        results.run("8.undefine", s.undefine, needs=["2.define"])
    return {
        "results": results.results,
        "seconds": results.seconds,
        "timings": s.timings,
        "packaged_rule": packaged_rule_info(),
        "mdevctl_version": version,
        "driver": {
            "name": driver.name,
            "parent": driver.parent,
            "types": [driver.auto_type, driver.manual_type],
        },
        "cleanup": cleanup_problems,
        "wall_s": round(time.monotonic() - started, 1),
    }
