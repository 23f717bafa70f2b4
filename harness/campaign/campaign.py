# SPDX-License-Identifier: MIT
"""The fuzzing loop: generate or mutate a program, run it in a worker's VM, keep it if it
reached new code, and turn each new finding into a minimized reproducer. Workers are threads,
one VM each, sharing the corpus and the findings.

    stats = Campaign(target, corpus, store, budget, progress).run(workers=1, seed=1)

kmemleak is asked every `leak_every_s`; a leak is pinned on one program by bisecting the
programs run since the scan before last (an object is only reported once it is 5 s old), and
that program is then minimized like any other finding, waiting out the age at each try.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.campaign.corpus import Corpus
from harness.campaign.findings import FindingRecord, FindingStore
from harness.campaign.minimize import minimize
from harness.campaign.worker import FuzzVm, Outcome, Target
from harness.core.progress import Progress
from harness.fuzz.program import Generator, Profile, Program
from harness.fuzz.replay import LEAK_AGE_S, ONCE_PER_BOOT
from harness.plugin.health import Finding
from harness.plugin.known_issues import known_issue_of
from harness.ssh.errors import SshError
from harness.vm.console import strip_prefix
from harness.vm.machine import BootError
from harness.vm.saved_state import SavedStateError


class Snapshot(Protocol):
    """What a campaign copies from its VMs (gcov's counters): `take` at every
    `snapshot_every_s` and at a worker's end, `retire` before a worker's live VM is replaced,
    so that each copy still counts what the replaced VMs ran."""

    def take(self, fvm: FuzzVm, worker: int, at: float) -> None: ...

    def retire(self, fvm: FuzzVm, worker: int) -> None: ...


TIMELINE_EVERY_S = 10.0
STATUS_EVERY_S = 30.0
MINIMIZE_BUDGET = 120  # runs of a candidate program per finding
START_ATTEMPTS = 3  # a VM that fails to start is tried again before the campaign ends
MINIMIZE_SECONDS = 300.0  # and the time they may take (a crash costs a new VM per run)
# Not bugs of the driver: the guest's own kernel log noise that health also reports.
IGNORED_KINDS = frozenset({"lockdown", "taint"})


@dataclass(frozen=True)
class Budget:
    seconds: float | None = None
    iterations: int | None = None
    findings: int | None = None  # stop once this many new findings are written

    def spent(self, elapsed: float, iterations: int, findings: int = 0) -> bool:
        return (
            (self.seconds is not None and elapsed >= self.seconds)
            or (self.iterations is not None and iterations >= self.iterations)
            or (self.findings is not None and findings >= self.findings)
        )


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    iterations: int = 0
    ops: int = 0
    guest_seconds: float = 0.0  # the guest's time inside programs
    boots: int = 0
    deaths: int = 0
    kept: int = 0  # programs added to the corpus
    known: dict[str, int] = field(default_factory=dict)  # known kernel issues seen: how often
    executor_errors: dict[str, int] = field(default_factory=dict)  # the fuzzer's own bugs
    ops_ok: int = 0  # ops other than open that the device accepted
    ops_skipped: int = 0  # ops that did not apply (no device open, nothing mapped)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # (s, programs, PCs)
    findings: list[FindingRecord] = field(default_factory=list)
    duplicates: int = 0
    accelerator: str = ""
    kcov: bool = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def guest_ops_per_s(self) -> float:
        """Ops per second inside programs, in the guest."""
        return self.ops / self.guest_seconds if self.guest_seconds else 0.0


class Campaign:
    def __init__(
        self,
        target: Target,
        corpus: Corpus,
        store: FindingStore,
        budget: Budget,
        progress: Progress,
        *,
        minimize_findings: bool = True,
        leak_every_s: float = 20.0,
        snapshot: Snapshot | None = None,
        snapshot_every_s: float = 60.0,
        vm_factory: Callable[[Target, Progress], FuzzVm] = FuzzVm,
    ) -> None:
        self.target = target
        self.corpus = corpus
        self.store = store
        self.budget = budget
        self.progress = progress
        self.minimize_findings = minimize_findings
        self.leak_every_s = leak_every_s
        self.snapshot = snapshot
        self.snapshot_every_s = snapshot_every_s
        self.vm_factory = vm_factory
        self.stats = Stats()
        self._lock = threading.Lock()
        self._claimed: set[str] = set()  # fingerprints being handled or done in this run
        self._stop = threading.Event()
        self._errors: list[BaseException] = []

    # -- the loop -------------------------------------------------------------------------------

    def run(self, workers: int = 1, seed: int | None = None) -> Stats:
        seed = seed if seed is not None else random.randrange(1 << 32)
        self.stats = Stats()
        self._record_timeline()
        threads = [
            threading.Thread(target=self._worker, args=(n, seed + n), daemon=True)
            for n in range(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(STATUS_EVERY_S / len(threads))
                self._status()
        except KeyboardInterrupt:
            self._stop.set()
            for thread in threads:
                thread.join()
            raise
        finally:
            self.corpus.save()
        self._record_timeline()
        if self._errors:
            raise self._errors[0]
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def _worker(self, number: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with self.vm_factory(self.target, self._tagged(number)) as fvm:
                if self.snapshot is not None:
                    fvm.before_replace = functools.partial(self.snapshot.retire, worker=number)
                with self._lock:
                    self.stats.accelerator = fvm.guest.vm.accelerator.name if fvm.guest else ""
                    self.stats.kcov = bool(fvm.ready.get("kcov"))
                generator = Generator(Profile.from_json(fvm.ready["profile"]), rng)
                window = LeakWindow()
                next_snapshot = self.snapshot_every_s
                while not self._stop.is_set():
                    if self._spent():
                        break
                    elapsed = self.stats.elapsed()
                    if self.snapshot is not None and elapsed >= next_snapshot:
                        # After a busy stretch (minimizing a finding) several slots may have
                        # passed: the counters are those of now, so the latest slot names them.
                        slot = latest_slot(elapsed, self.snapshot_every_s)
                        self._snapshot(fvm, number, slot)
                        next_snapshot = slot + self.snapshot_every_s
                    program = self._next_program(generator, rng)
                    outcome = self._execute(fvm, program)
                    window.add(program, fvm.boots)
                    for finding in outcome.findings:
                        op = outcome.finding_ops.get(finding.fingerprint)
                        self._handle(fvm, finding, [program], op)
                    if fvm.alive and any(
                        ONCE_PER_BOOT.search(f.headline) for f in outcome.findings
                    ):  # lockdep is off in this kernel now: a new VM checks locking again
                        fvm.start()
                    if window.due(self.leak_every_s):
                        self._scan(fvm, window)
                if not self._stop.is_set():  # a last scan: the budget's end is no excuse
                    self._scan(fvm, window, settle=LEAK_AGE_S)
                if self.snapshot is not None:
                    self._snapshot(fvm, number, self.stats.elapsed())
                with self._lock:
                    self.stats.boots += fvm.boots
        except BaseException as err:
            with self._lock:
                self._errors.append(err)
            self._stop.set()

    def _scan(self, fvm: FuzzVm, window: LeakWindow, settle: float = 0.0) -> None:
        found = fvm.leaks(settle)
        candidates = window.scanned()
        for finding in found:
            self._handle(fvm, finding, candidates)

    def _spent(self) -> bool:
        with self._lock:
            s = self.stats
            return self.budget.spent(s.elapsed(), s.iterations, len(s.findings))

    def _next_program(self, generator: Generator, rng: random.Random) -> Program:
        parent = self.corpus.pick(rng) if rng.random() < 0.8 else None
        if parent is None:
            return generator.program()
        return generator.mutate(parent, lambda: self.corpus.pick(rng) or [])

    def _execute(self, fvm: FuzzVm, program: Program, *, fresh_device: bool = False) -> Outcome:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                outcome = fvm.run(program, fresh_device=fresh_device, stop=self._stop.is_set)
                break
            except (BootError, SavedStateError, SshError, OSError) as err:  # a new VM's start
                if attempt == START_ATTEMPTS or self._stop.is_set():
                    raise
                self.progress(f"a new VM did not start ({err}); trying again")
                fvm.close()
        new = self.corpus.add(program, outcome.new_pcs) if outcome.new_pcs else 0
        with self._lock:
            self.stats.iterations += 1
            self.stats.ops += len(outcome.results)
            for op, result in zip(program, outcome.results, strict=False):
                if result == "ok" and op["op"] != "open":
                    self.stats.ops_ok += 1
                elif result == "skip":
                    self.stats.ops_skipped += 1
            self.stats.guest_seconds += outcome.seconds
            self.stats.kept += 1 if new else 0
            self.stats.deaths += 1 if outcome.died else 0
            if outcome.error is not None:
                seen = self.stats.executor_errors.get(outcome.error, 0)
                self.stats.executor_errors[outcome.error] = seen + 1
                if not seen:
                    self.progress(f"the fuzzer's executor failed (a bug of ours): {outcome.error}")
            if (
                not self.stats.timeline
                or self.stats.elapsed() - self.stats.timeline[-1][0] >= TIMELINE_EVERY_S
            ):
                self._record_timeline()
        return outcome

    def _snapshot(self, fvm: FuzzVm, number: int, at: float) -> None:
        if self.snapshot is not None and fvm.alive:
            self.snapshot.take(fvm, number, at)

    # -- findings -------------------------------------------------------------------------------

    def _handle(
        self, fvm: FuzzVm, finding: Finding, candidates: list[Program], op: int | None = None
    ) -> None:
        """A new finding: pinned on one program (cut after the op it showed in), minimized,
        written out. `candidates`: the programs that may have caused it, oldest first."""
        if finding.kind in IGNORED_KINDS:
            return
        issue = known_issue_of(finding)
        if issue is not None:  # the kernel's bug, not the driver's (harness.plugin.known_issues)
            with self._lock:
                self.stats.known[issue.key] = self.stats.known.get(issue.key, 0) + 1
            return
        with self._lock:
            found_after = self.stats.elapsed()
            iterations = self.stats.iterations
            if finding.fingerprint in self._claimed or self.store.known(finding.fingerprint):
                self.stats.duplicates += 1
                return
            self._claimed.add(finding.fingerprint)
        headline = strip_prefix(finding.headline)
        self.progress(
            f"finding {finding.fingerprint} after {found_after:.0f} s ({iterations} programs): "
            f"{headline}"
        )
        started = time.monotonic()
        trial = _Trial(self, fvm, finding.fingerprint, leak=finding.kind == "kmemleak",
                       fresh=bool(ONCE_PER_BOOT.search(headline)))  # fmt: skip
        culprit, program, reproduced = trial.pin_and_minimize(
            candidates, op, hung=finding.kind == "hung"
        )
        record = FindingRecord(
            fingerprint=finding.fingerprint,
            kind=finding.kind,
            headline=headline,
            lines=list(finding.lines),
            program=program,
            original_ops=len(culprit),
            found_after_s=round(found_after, 1),
            iterations=iterations,
            minimize_runs=trial.runs,
            minimize_s=round(time.monotonic() - started, 1),
            kernel=self.target.kernel_id,
            mdev_type=str(fvm.ready.get("type", self.target.mdev_type)),
            accelerator=self.stats.accelerator,
            reproduced=reproduced,
            extra={"fresh_vm": trial.fresh, "replayed": finding.kind != "hung"},
        )
        path = self.store.save(record)
        with self._lock:
            self.stats.findings.append(record)
        self.progress(
            f"finding {finding.fingerprint}: {len(culprit)} -> {len(program)} operations in "
            f"{record.minimize_s:.0f} s ({trial.runs} runs"
            f"{', a new VM each' if trial.fresh else ''}), "
            f"{'reproduced' if reproduced else 'NOT reproduced'}; {path}"
        )

    @staticmethod
    def _bisect(candidates: list[Program], reproduces: Callable[[list[Program]], bool]) -> Program:
        """The one program of `candidates` that causes the finding (the last, if none alone)."""
        pool = candidates
        while len(pool) > 1:
            half = pool[: len(pool) // 2]
            pool = half if reproduces(half) else pool[len(pool) // 2 :]
        return pool[0]

    # -- progress -------------------------------------------------------------------------------

    def _record_timeline(self) -> None:
        self.stats.timeline.append(
            (round(self.stats.elapsed(), 1), self.stats.iterations, len(self.corpus.pcs))
        )

    def _status(self) -> None:
        with self._lock:
            s = self.stats
            elapsed = s.elapsed()
            line = (
                f"fuzz: {elapsed:.0f} s, {s.iterations} programs, "
                f"{s.guest_ops_per_s:.0f} ops/s in the guest, "
                f"{len(self.corpus.pcs)} PCs, corpus {len(self.corpus.programs)}, "
                f"{len(s.findings)} finding(s)"
            )
        self.progress(line)

    def _tagged(self, number: int) -> Progress:
        return lambda line: self.progress(f"[worker {number}] {line}")


def latest_slot(elapsed: float, every: float) -> float:
    """The last multiple of `every` at or before `elapsed` (the workers share these slots)."""
    return math.floor(elapsed / every) * every


class LeakWindow:
    """The programs a leak that the next kmemleak scan reports may come from. kmemleak reports
    an object once it is LEAK_AGE_S old and unchanged since the scan before (a new object
    that was written is first seen changed), so: those run on this VM since the scan before
    the last one, less that age."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, Program]] = []
        self.scans = [time.monotonic()] * 2  # the last two, oldest first
        self.boots = -1

    def add(self, program: Program, boots: int) -> None:
        if boots != self.boots:  # a new VM: the old one's leaks went with it
            self.entries, self.boots = [], boots
        self.entries.append((time.monotonic(), program))

    def due(self, every: float) -> bool:
        return time.monotonic() - self.scans[-1] >= every

    def scanned(self) -> list[Program]:
        """A scan happened: the programs it may have reported on, oldest first."""
        since = self.scans[0] - LEAK_AGE_S - 1.0
        candidates = [program for at, program in self.entries if at >= since]
        self.scans = [self.scans[-1], time.monotonic()]
        keep = self.scans[0] - LEAK_AGE_S - 1.0
        self.entries = [(at, program) for at, program in self.entries if at >= keep]
        return candidates


class _Trial:
    """Runs that pin a finding on one program and shrink it: each on a new device, on a new
    VM too for a report the kernel makes once per boot, waiting out kmemleak's age for a
    leak; minimizing stops after MINIMIZE_SECONDS or at the campaign's stop."""

    def __init__(
        self, campaign: Campaign, fvm: FuzzVm, fingerprint: str, *, leak: bool, fresh: bool
    ) -> None:
        self.campaign = campaign
        self.fvm = fvm
        self.fingerprint = fingerprint
        self.leak = leak
        self.fresh = fresh
        self.runs = 0
        self.deadline: float | None = None  # minimizing's own: pinning is not cut short

    def reproduces(self, programs: list[Program]) -> bool:
        stopped = self.campaign._stop.is_set()
        if stopped or (self.deadline is not None and time.monotonic() > self.deadline):
            return False  # minimize() keeps the shortest found so far
        self.runs += 1
        if self.fresh:
            self.fvm.start()
        seen: list[Finding] = []
        for program in programs:
            seen += self.campaign._execute(self.fvm, program, fresh_device=True).findings
        if self.leak:
            seen += self.fvm.leaks(settle=LEAK_AGE_S)
        return any(f.fingerprint == self.fingerprint for f in seen)

    def pin_and_minimize(
        self, candidates: list[Program], op: int | None, *, hung: bool
    ) -> tuple[Program, Program, bool]:
        """(the program it was pinned on, the minimized one, whether it reproduced)."""
        culprit = candidates[-1]
        if self.leak and len(candidates) > 1:
            culprit = Campaign._bisect(candidates, self.reproduces)
        if op is not None and not self.leak:
            culprit = culprit[: op + 1]  # what came after the op it showed in is not needed
        if hung:  # each try would wait out the timeout: kept as cut
            return culprit, culprit, False
        confirmed = self.reproduces([culprit])
        if not confirmed and not self.fresh:  # a report made once per boot (WARN_ONCE)
            self.fresh = True
            confirmed = self.reproduces([culprit])
        program = culprit
        if confirmed and self.campaign.minimize_findings:
            self.deadline = time.monotonic() + MINIMIZE_SECONDS
            program = minimize(culprit, lambda ops: self.reproduces([ops]), MINIMIZE_BUDGET)
        return culprit, program, confirmed  # minimize() returns only programs that reproduced


def summary(stats: Stats, corpus: Corpus) -> dict[str, Any]:
    elapsed = stats.timeline[-1][0] if stats.timeline else stats.elapsed()
    return {
        "seconds": elapsed,
        "programs": stats.iterations,
        "ops": stats.ops,
        "ops_per_s_guest": round(stats.guest_ops_per_s, 1),
        "ops_per_s_wall": round(stats.ops / elapsed, 1) if elapsed else 0.0,
        "pcs": len(corpus.pcs),
        "pcs_before": corpus.loaded[1],
        "corpus": len(corpus.programs),
        "corpus_before": corpus.loaded[0],
        "vm_boots": stats.boots,
        "vm_deaths": stats.deaths,
        "accelerator": stats.accelerator,
        "kcov": stats.kcov,
        "findings": [
            {
                "fingerprint": r.fingerprint,
                "kind": r.kind,
                "headline": r.headline,
                "found_after_s": r.found_after_s,
                "iterations": r.iterations,
                "minimize_s": r.minimize_s,
                "ops": len(r.program),
                "original_ops": r.original_ops,
                "reproduced": r.reproduced,
            }
            for r in stats.findings
        ],
        "duplicates": stats.duplicates,
        "ops_ok": stats.ops_ok,
        "ops_skipped": stats.ops_skipped,
        "known_kernel_issues": stats.known,
        "executor_errors": stats.executor_errors,
        "timeline": stats.timeline,
    }


__all__ = ["Budget", "Campaign", "Stats", "summary"]
