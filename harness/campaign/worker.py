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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.core.closing import Closing
from harness.core.progress import Progress
from harness.plugin.guest_vm import GuestVm, VendorModule
from harness.plugin.health import Finding, leak_findings, scan_kernel_log
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
    died: str | None = None  # why the guest loop or the VM ended under this program


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

    def run(self, program: list[dict[str, Any]]) -> Outcome:
        if not self.alive:
            self.start()
        assert self.guest is not None and self.pipe is not None
        guest, pipe = self.guest, self.pipe
        mark = guest.console_mark()
        deadline = time.monotonic() + guest.scaled(PROGRAM_TIMEOUT_S)
        problem = None
        try:
            pipe.send_line(json.dumps({"run": program}).encode())
            while problem is None:
                try:
                    line = pipe.read_line(POLL_S)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        problem = "the program did not finish in time"
                    else:
                        problem = guest.stalled(mark)
                    continue
                if line is None:
                    problem = "the guest loop's connection ended"
                    break
                done = json.loads(line)["done"]
                return Outcome(
                    done["results"],
                    done["new_pcs"],
                    done["pcs"],
                    done["seconds"],
                    scan_kernel_log(done["log"], "during the program"),
                )
        except (OSError, RuntimeError) as err:  # SshError: the connection broke
            problem = f"the guest loop's connection broke: {err}"
        death = guest.diagnose_death(mark, problem or "the guest loop ended")
        self.close()  # the VM is not trusted with another program: the next gets a new one
        return Outcome(findings=list(death.findings), died=death.text)

    def leaks(self) -> list[Finding]:
        """kmemleak's reports since the last scan ([] without kmemleak or a live loop)."""
        if not self.alive or not self.ready.get("kmemleak"):
            return []
        assert self.guest is not None and self.pipe is not None
        try:
            self.pipe.send_line(b'{"leaks": true}')
            line = self.pipe.read_line(self.guest.scaled(LEAK_SCAN_TIMEOUT_S))
        except (OSError, RuntimeError, TimeoutError):
            self.close()
            return []
        if line is None:
            self.close()
            return []
        return leak_findings(json.loads(line)["leaks"], "found by a kmemleak scan")

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
