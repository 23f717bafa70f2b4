# SPDX-License-Identifier: MIT
"""A VM made ready for guest tests: the vendor module loaded, harness and suite pushed, and a
guest runner per suite started over SSH; and what to say when the VM dies under a test.

The module is loaded once per VM; a VM that replaces a dead one is a new GuestVm, so it gets
the module again.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.core.closing import Closing
from harness.core.progress import Progress
from harness.kmod.modinfo import module_info
from harness.plugin.health import Finding, from_splat
from harness.plugin.liveness import Liveness
from harness.plugin.runner_client import RunnerClient
from harness.vm.console import VerdictKind, parse_console
from harness.vm.guest_python import GUEST_ROOT, push_harness, push_tree
from harness.vm.machine import VFIO_MODULES, Vm

GUEST_SUITES = "/opt/vfio-harness-suites"
RUNNER_MODULE = "harness.plugin.guest_runner"
# Calibrated for KVM; the accelerator's timeout_scale stretches them.
MODULE_LOAD_TIMEOUT_S = 60.0
COLLECT_TIMEOUT_S = 120.0
QUIT_TIMEOUT_S = 30.0
PANIC_EXIT_WAIT_S = 5.0  # QEMU exits on a guest panic (pvpanic); the connection dies first
CONSOLE_TAIL_LINES = 40
# How long a test may still report after its kernel oopsed before it counts as hung.
OOPS_GRACE_S = 15.0
FATAL_KINDS = frozenset({VerdictKind.OOPS, VerdictKind.BUG, VerdictKind.PANIC})


@dataclass(frozen=True)
class VendorModule:
    path: Path
    name: str  # as in /proc/modules
    depends: tuple[str, ...]
    params: tuple[str, ...] = ()  # insmod's name=value arguments

    @classmethod
    def read(cls, path: Path, params: tuple[str, ...] = ()) -> VendorModule:
        info = module_info(path)
        name = info.first("name") or path.name.removesuffix(".ko").replace("-", "_")
        depends = tuple(d for d in (info.first("depends") or "").split(",") if d)
        return cls(path, name, depends, params)


def is_locked_down(state: str) -> bool:
    """Whether /sys/kernel/security/lockdown's text ("none [integrity] confidentiality")
    selects a mode other than none."""
    selected = [word for word in state.split() if word.startswith("[") and word.endswith("]")]
    return selected in (["[integrity]"], ["[confidentiality]"])


@dataclass(frozen=True)
class Death:
    """What the console said after the runner's connection ended."""

    text: str
    findings: tuple[Finding, ...]
    vm_dead: bool


class GuestVm(Closing):
    def __init__(self, vm: Vm, progress: Progress) -> None:
        self.vm = vm
        self.progress = progress
        self.module: VendorModule | None = None
        self.locked_down = False
        self.runners: dict[Path, RunnerClient] = {}
        self._oops_seen_at: float | None = None
        self.liveness = Liveness(self.answers)

    def answers(self, timeout: float) -> bool:
        """The guest runs a command over SSH within `timeout` seconds."""
        return self.vm.ssh.run("true", timeout, check=False).ok

    def scaled(self, seconds: float) -> float:
        return seconds * self.vm.accelerator.timeout_scale

    def require_lockdown(self) -> None:
        """The guest's kernel is locked down (as Secure Boot makes it), or RuntimeError;
        asked once per VM."""
        if self.locked_down:
            return
        state = self.vm.run("cat /sys/kernel/security/lockdown 2>&1 || true").strip()
        if not is_locked_down(state):
            raise RuntimeError(f"Secure Boot, but the kernel is not locked down: {state!r}")
        self.progress(f"{self.vm.machine.kernel_release}: locked down ({state})")
        self.locked_down = True

    def load_module(self, module: VendorModule) -> None:
        """insmod `module` (its dependencies modprobed first) unless this VM has it."""
        if self.module is not None:
            return
        remote = f"/tmp/{module.path.name}"
        self.vm.ssh.put(module.path, remote)
        needed = " ".join(shlex.quote(m) for m in dict.fromkeys((*VFIO_MODULES, *module.depends)))
        name = shlex.quote(module.name)
        params = " ".join(shlex.quote(p) for p in module.params)
        self.vm.ssh.run(
            f"modprobe -a {needed} && {{ grep -q '^{module.name} ' /proc/modules"
            f" || insmod {shlex.quote(remote)} {params}; }}"
            " || { rc=$?; dmesg | tail -20 >&2; exit $rc; }",
            self.scaled(MODULE_LOAD_TIMEOUT_S),
        )
        self.progress(f"{self.vm.machine.kernel_release}: loaded {name} ({module.path})")
        self.module = module

    def runner(
        self, suite: Path, relative: str, tarball: bytes, env: Mapping[str, str]
    ) -> RunnerClient:
        """This VM's runner over `suite` (`relative` to pytest's rootdir, the tar's layout),
        started on first use, with the harness and the suite pushed."""
        client = self.runners.get(suite)
        if client is not None and client.alive:
            return client
        if client is not None:
            client.close()
        push_harness(self.vm)
        rootdir = f"{GUEST_SUITES}/{hashlib.sha256(str(suite).encode()).hexdigest()[:12]}"
        push_tree(self.vm, tarball, rootdir)
        command = [
            "python3",
            "-m",
            RUNNER_MODULE,
            "--rootdir",
            rootdir,
            f"{rootdir}/{relative}" if relative else rootdir,
        ]
        pipe = self.vm.ssh.start(command, env={"PYTHONPATH": GUEST_ROOT, **env})
        client = RunnerClient.start(pipe, self.scaled(COLLECT_TIMEOUT_S))
        client.guest_rootdir = rootdir
        info = client.info
        self.progress(
            f"{self.vm.machine.kernel_release}: guest runner up (pytest {info.pytest_version}, "
            f"Python {info.python_version}, {info.items} items)"
        )
        self.runners[suite] = client
        return client

    def console_mark(self) -> int:
        """A test starts: where its console lines begin; oops and silence count from now."""
        self._oops_seen_at = None
        self.liveness.restart()
        self.vm.console.poll()
        return len(self.vm.console.lines)

    def stalled(self, mark: int) -> str | None:
        """Why to stop waiting for the running test: an oops it did not survive, or a guest
        that no longer answers (harness.plugin.liveness)."""
        return self.stalled_by_oops(mark) or self.liveness.unresponsive()

    def stalled_by_oops(self, mark: int) -> str | None:
        """Why to stop waiting for the running test: its kernel oopsed (or hit a BUG) a while
        ago and the test has not reported since. An oops kills the task it hit, often with
        locks held, so the test's process may never return; without this the host would
        wait the whole --guest-timeout (stretched 8-fold under TCG)."""
        vm = self.vm
        vm.console.poll()
        if self._oops_seen_at is None:
            verdict = parse_console(line.text for line in vm.console.lines[mark:])
            if verdict.kind not in FATAL_KINDS:
                return None
            self._oops_seen_at = time.monotonic()
        if time.monotonic() - self._oops_seen_at < OOPS_GRACE_S:
            return None
        self._oops_seen_at = None
        return f"the kernel reported an oops or BUG {OOPS_GRACE_S:.0f} s ago and the test hangs"

    def diagnose_death(self, mark: int, problem: str) -> Death:
        """After a runner's connection ended: did the guest die, and what did its console say."""
        vm = self.vm
        if not vm.ssh.is_active:
            deadline = time.monotonic() + self.scaled(PANIC_EXIT_WAIT_S)
            while vm.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        vm.console.flush() if not vm.alive() else vm.console.poll()
        lines = vm.console.lines[mark:]
        verdict = parse_console(line.text for line in lines)
        findings = tuple(from_splat(s, "on the console") for s in verdict.splats)
        dead = not vm.alive() or not vm.ssh.is_active
        if not vm.alive():
            state = f"QEMU exited with status {vm.process.returncode}"
        elif not vm.ssh.is_active:
            state = "QEMU still runs but SSH is gone"
        else:
            state = "the guest is still up: the runner process itself ended"
        parts = [f"{problem}\n{state} ({vm.machine.kernel_release}, {vm.accelerator.name})"]
        parts += [f.render() for f in findings]
        count = CONSOLE_TAIL_LINES if not findings else 8  # the splat is shown already
        tail = "\n".join(str(line) for line in vm.console.lines[-count:])
        parts.append(f"console tail ({vm.run_dir}):\n{tail}")
        return Death("\n\n".join(parts), findings, dead)

    def stop_runners(self) -> None:
        for client in self.runners.values():
            try:
                client.quit(self.scaled(QUIT_TIMEOUT_S))
            finally:
                client.close()
        self.runners.clear()

    def close(self) -> None:
        try:
            if self.vm.alive() and self.vm.ssh.is_active:
                self.stop_runners()
        finally:
            for client in self.runners.values():
                client.close()
            self.runners.clear()
