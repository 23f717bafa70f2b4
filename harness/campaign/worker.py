# SPDX-License-Identifier: MIT
"""One fuzzing VM: booted (restored from its saved state), the driver loaded, the guest loop
(harness.fuzz.guest) started; programs in, results, new coverage and findings out. A VM that
dies under a program is replaced before the next one.

    with FuzzVm(target, progress) as fvm:
        outcome = fvm.run(program)          # outcome.findings, outcome.new_pcs, outcome.died

A finding is harness.plugin.health's: a splat of the kernel log the program caused (through
/dev/kmsg while the guest lives, from the console when it died), or a kmemleak report.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.closing import Closing
from harness.core.progress import Progress
from harness.fuzz.guest import AT_FILE
from harness.plugin.guest_vm import GuestVm, VendorModule
from harness.plugin.health import Finding, fingerprint_of, leak_findings, scan_kernel_log
from harness.vm.guest_python import GUEST_ROOT, push_harness

if TYPE_CHECKING:
    from harness.images.build import BuiltImage
    from harness.kernel.custom import KernelBundle
    from harness.ssh.stream import StreamingCommand
    from harness.vm.accel import Accelerator

GUEST_MODULE = "harness.fuzz.guest"
# Calibrated for KVM; the accelerator's timeout_scale stretches them.
READY_TIMEOUT_S = 60.0
PROGRAM_TIMEOUT_S = 30.0
LEAK_SCAN_TIMEOUT_S = 60.0
STACK_TIMEOUT_S = 10.0
POLL_S = 1.0


@dataclass(frozen=True)
class Target:
    """What is fuzzed: a kernel, its image, the driver and the device type."""

    kernel_id: str
    image: BuiltImage
    bundle: KernelBundle | None
    module: VendorModule
    mdev_type: str | None  # None: our reference device's small type
    mdev_parent: str | None = None
    accelerator: Accelerator | None = None
    memory_mib: int = 1024

    def env(self) -> dict[str, str]:
        env = {"PYTHONPATH": GUEST_ROOT}
        if self.mdev_type:
            env["HARNESS_MDEV_TYPE"] = self.mdev_type
        if self.mdev_parent:
            env["HARNESS_MDEV_PARENT"] = self.mdev_parent
        return env


@dataclass
class Outcome:
    results: list[str] = field(default_factory=list)
    new_pcs: list[int] = field(default_factory=list)
    pcs: int = 0
    seconds: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    finding_ops: dict[str, int] = field(default_factory=dict)  # fingerprint -> op it showed in
    died: str | None = None  # why the guest loop or the VM ended under this program
    at: int = -1  # the op that was running when it ended
    error: str | None = None  # the executor's own exception (a bug of the fuzzer, not the driver)


def _outcome(done: dict[str, Any]) -> Outcome:
    findings: list[Finding] = []
    ops: dict[str, int] = {}
    for index, lines in done["logs"]:
        for finding in scan_kernel_log(lines, f"during op {index} of the program"):
            findings.append(finding)
            ops.setdefault(finding.fingerprint, int(index))
    return Outcome(
        done["results"], done["new_pcs"], done["pcs"], done["seconds"], findings, ops,
        error=done.get("error"),
    )  # fmt: skip


_STACK_FRAME = re.compile(r"^\[<[0-9a-f]+>\]\s+([\w.]+)\+0x")


def hang_finding(stack: str, op_name: str) -> Finding:
    """A program that never returned, from /proc/PID/stack: where in the kernel it waits."""
    frames = [m.group(1) for line in stack.splitlines() if (m := _STACK_FRAME.match(line))]
    where = next((f for f in frames if not f.startswith(("schedule", "__schedule"))), "?")
    headline = f"hang: the fuzzer's {op_name} never returned; it waits in {where}"
    return Finding("hung", headline, fingerprint_of("hung", op_name, *frames[:8]),
                   tuple(stack.splitlines()))  # fmt: skip


class FuzzStartError(RuntimeError):
    """The guest loop did not start: the message has its stderr (a missing device type, say)."""


class FuzzVm(Closing):
    def __init__(self, target: Target, progress: Progress) -> None:
        self.target = target
        self.progress = progress
        self.guest: GuestVm | None = None
        self.pipe: StreamingCommand | None = None
        self.ready: dict[str, Any] = {}
        self.boots = 0
        # Called with the VM before a live one is replaced (not one that died): what it ran
        # must outlive it, gcov's counters for one.
        self.before_replace: Callable[[FuzzVm], None] | None = None

    def __enter__(self) -> FuzzVm:
        self.start()
        return self

    @property
    def alive(self) -> bool:
        return self.guest is not None and self.pipe is not None

    def start(self) -> None:
        """A new VM with the guest loop running (the old ones closed)."""
        self.boot()
        assert self.guest is not None
        try:
            self.pipe = self.guest.vm.ssh.start(
                ["python3", "-m", GUEST_MODULE], env=self.target.env()
            )
            line = self.pipe.read_line(self.guest.scaled(READY_TIMEOUT_S))
            message = json.loads(line) if line else {}
            if "error" in message:  # the type asked for is not there: a user's mistake
                raise FuzzStartError(message["error"])
            if "ready" not in message:
                tail = "\n".join(f"  | {x}" for x in self.pipe.stderr_tail[-20:])
                raise FuzzStartError(f"the fuzzer's guest loop did not start:\n{tail}")
            self.ready = message["ready"]
        except BaseException:
            self.close()
            raise

    def boot(self) -> GuestVm:
        """A new VM with the driver loaded and the harness pushed (the old ones closed)."""
        from harness.vm.saved_state import start_vm

        if self.alive and self.before_replace is not None:
            self.before_replace(self)
        self.close()
        t = self.target
        vm = start_vm(
            t.image,
            kernel=t.bundle,
            accelerator=t.accelerator,
            memory_mib=t.memory_mib,
            progress=self.progress,
        )
        self.boots += 1
        self.guest = GuestVm(vm, self.progress)
        try:
            self.guest.load_module(t.module)
            push_harness(vm)
        except BaseException:
            self.close()
            raise
        return self.guest

    def run(
        self,
        program: list[dict[str, Any]],
        *,
        fresh_device: bool = False,
        stop: Callable[[], bool] = lambda: False,
    ) -> Outcome:
        """Run one program; `fresh_device`: on a device nothing used before; `stop()` asked
        while waiting (Ctrl-C, the budget): the VM is then given up like a dead one."""
        if not self.alive:
            self.start()
        assert self.guest is not None and self.pipe is not None
        guest, pipe = self.guest, self.pipe
        mark = guest.console_mark()
        deadline = time.monotonic() + guest.scaled(PROGRAM_TIMEOUT_S)
        problem = None
        hung = False
        try:
            request: dict[str, Any] = {"run": program, "fresh": fresh_device}
            pipe.send_line(json.dumps(request).encode())
            while problem is None:
                try:
                    line = pipe.read_line(POLL_S)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        problem, hung = "the program did not finish in time", True
                    elif stop():
                        problem = "stopped while the program ran"
                    else:
                        problem = guest.stalled(mark)
                    continue
                if line is None:
                    problem = "the guest loop's connection ended"
                    break
                return _outcome(json.loads(line)["done"])
        except (OSError, RuntimeError) as err:  # SshError: the connection broke
            problem = f"the guest loop's connection broke: {err}"
        except (ValueError, KeyError, TypeError) as err:  # a line that is not the protocol
            problem = f"the guest loop broke the protocol: {err!r}"
        findings = []
        if hung:  # the guest answers; the loop's process waits in the kernel
            at = self._running_op()
            problem = f"op {at} of the program did not finish in time"
            stack = self._stack()
            if stack:
                name = program[at]["op"] if 0 <= at < len(program) else "clean-up"
                findings.append(hang_finding(stack, name))
        death = guest.diagnose_death(mark, problem or "the guest loop ended")
        if not hung:
            at = self._running_op() if not death.vm_dead else -1
        self.close()  # the VM is not trusted with another program: the next gets a new one
        findings += death.findings
        ops = {f.fingerprint: at for f in findings if at >= 0}
        return Outcome(findings=findings, finding_ops=ops, died=death.text, at=at)

    def _running_op(self) -> int:
        """The op the guest loop was running when it ended or hung (-1: unknown, the guest
        is gone too)."""
        assert self.guest is not None
        vm = self.guest.vm
        if not (vm.alive() and vm.ssh.is_active):
            return -1
        said = self._read_guest_file(AT_FILE)
        try:
            return int(said.strip()) if said else -1
        except ValueError:
            return -1

    def _stack(self) -> str:
        """The kernel stack of the guest loop's process, which hangs in an op."""
        assert self.guest is not None
        pid = int(self.ready.get("pid", 0))
        if not pid:
            return ""
        return self._read_guest_file(f"/proc/{pid}/stack")

    def _read_guest_file(self, path: str) -> str:
        """A small guest file's text ("" if it cannot be read), asked with a short timeout:
        the guest may be on its way down."""
        assert self.guest is not None
        timeout = min(self.guest.scaled(STACK_TIMEOUT_S), STACK_TIMEOUT_S * 2)
        result = self.guest.vm.ssh.run(f"cat {path}", timeout, check=False)
        return result.stdout if result.ok else ""

    def leaks(self, settle: float = 0.0) -> list[Finding]:
        """kmemleak's reports since the last scan ([] without kmemleak or a live loop);
        `settle`: two scans that far apart, so that what the last program leaked is seen."""
        if not self.alive or not self.ready.get("kmemleak"):
            return []
        assert self.guest is not None and self.pipe is not None
        try:
            self.pipe.send_line(json.dumps({"leaks": True, "settle": settle}).encode())
            timeout = self.guest.scaled(LEAK_SCAN_TIMEOUT_S) + settle
            line = self.pipe.read_line(timeout)
        except (OSError, RuntimeError, TimeoutError):
            self.close()
            return []
        try:
            report = json.loads(line)["leaks"] if line is not None else None
        except (ValueError, KeyError, TypeError):
            report = None
        if report is None:
            self.close()
            return []
        return leak_findings(report, "found by a kmemleak scan")

    def close(self) -> None:
        pipe, self.pipe = self.pipe, None
        guest, self.guest = self.guest, None
        try:
            if pipe is not None:
                pipe.close()
        finally:
            if guest is not None:
                try:
                    guest.close()
                finally:
                    guest.vm.close()


__all__ = ["FuzzStartError", "FuzzVm", "Outcome", "Target"]
