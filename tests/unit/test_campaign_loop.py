# SPDX-License-Identifier: MIT
"""The fuzzing loop's decisions, with a fake VM whose "kernel" reports what a rule says: what
becomes a finding, how it is minimized (on a new VM per try for once-per-boot reports), how a
leak is pinned on one program, what is a known kernel issue, and when the budget ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.campaign import campaign as campaign_mod
from harness.campaign.campaign import Budget, Campaign
from harness.campaign.corpus import Corpus
from harness.campaign.findings import FindingStore
from harness.campaign.worker import Outcome, Target
from harness.core.progress import Progress
from harness.plugin.health import Finding
from tests.unit.test_fuzz_program import REFDEV

WARN = Finding("warning", "WARNING: CPU: 0 PID: 1 at main.c:541 hmdev_ioctl", "f-warn", ("w",))
LOCKDEP = Finding(
    "warning", "WARNING: possible circular locking dependency detected", "f-lockdep", ("l",)
)
LEAK = Finding("kmemleak", "kmemleak: unreferenced object, allocated in hmdev_ioctl", "f-leak", ())
TYPE1_ORDER = Finding(
    "warning",
    "WARNING: possible circular locking dependency detected",
    "f-known",
    ("  lock(&iommu->device_list_lock);", "  lock(&iommu->lock);"),
)
Rule = Callable[[list[dict[str, Any]], "FakeVm"], list[Finding]]


def ops(program: list[dict[str, Any]]) -> list[str]:
    return [op["op"] for op in program]


def reset_after_open(program: list[dict[str, Any]], _vm: FakeVm) -> list[Finding]:
    names = ops(program)
    if "open" in names and "reset" in names[names.index("open") :]:
        return [WARN]
    return []


class FakeVm:
    """FuzzVm's interface; `rule` says what the kernel reports for a program."""

    instances: ClassVar[list[FakeVm]] = []

    def __init__(self, _target: Target, _progress: Progress, rule: Rule, *, once: bool) -> None:
        self.rule = rule
        self.once = once  # reports once per boot, as lockdep does
        self.boots = 0
        self.ready = {"profile": REFDEV, "kcov": True, "type": "fake-1"}
        self.guest = None
        self.reported: set[str] = set()
        self.leaked = 0
        self.runs = 0
        self.first_shown: tuple[list[dict[str, Any]], int] | None = None
        self.before_replace: Callable[[FakeVm], None] | None = None
        FakeVm.instances.append(self)

    def __enter__(self) -> FakeVm:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    @property
    def alive(self) -> bool:
        return True

    def start(self) -> None:
        if self.boots and self.before_replace is not None:  # as FuzzVm.boot does
            self.before_replace(self)
        self.boots += 1
        self.reported = set()

    def run(self, program: list[dict[str, Any]], **_options: object) -> Outcome:
        self.runs += 1
        findings = []
        for finding in self.rule(program, self):
            if finding is LEAK:
                self.leaked += 1
            elif not (self.once and finding.fingerprint in self.reported):
                self.reported.add(finding.fingerprint)
                findings.append(finding)
        pcs = [hash(op["op"]) & 0xFFFF for op in program]
        names = ops(program)
        at = names.index("reset", names.index("open")) if findings else -1
        shown = {f.fingerprint: at for f in findings}  # the op a splat showed in
        if findings and self.first_shown is None:
            self.first_shown = (program, at)
        return Outcome(["ok"] * len(program), pcs, len(pcs), 0.001, findings, shown)

    def leaks(self, settle: float = 0.0) -> list[Finding]:
        found, self.leaked = ([LEAK] if self.leaked else []), 0
        return found


class Copies:
    """A Snapshot hook that records its calls: (what, worker, the VM's boots, seconds)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, float]] = []

    def take(self, fvm: FakeVm, worker: int, at: float) -> None:
        self.calls.append(("take", worker, fvm.boots, at))

    def retire(self, fvm: FakeVm, worker: int) -> None:
        self.calls.append(("retire", worker, fvm.boots, 0.0))


def run(
    tmp_path: Path,
    rule: Rule,
    budget: Budget,
    *,
    once: bool = False,
    seed: int = 3,
    copies: Copies | None = None,
) -> tuple[Campaign, FindingStore]:
    FakeVm.instances = []
    store = FindingStore(tmp_path / "findings")
    target = Target("debug", None, None, None, None)  # type: ignore[arg-type]
    campaign = Campaign(
        target,
        Corpus.open(tmp_path / "corpus"),
        store,
        budget,
        lambda _line: None,
        leak_every_s=0.0,
        snapshot=copies,  # type: ignore[arg-type]
        snapshot_every_s=0.05,
        vm_factory=lambda t, p: FakeVm(t, p, rule, once=once),  # type: ignore[arg-type,return-value]
    )
    campaign.run(workers=1, seed=seed)
    return campaign, store


@pytest.fixture(autouse=True)
def _no_leak_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaign_mod, "LEAK_AGE_S", 0.0)


def test_a_finding_is_minimized_saved_once_and_counted_after(tmp_path: Path) -> None:
    campaign, store = run(tmp_path, reset_after_open, Budget(iterations=300))
    stats = campaign.stats
    assert stats.iterations >= 300
    [record] = stats.findings
    assert ops(record.program) == ["open", "reset"] and record.reproduced
    assert ops(record.program) == ["open", "reset"] and record.mdev_type == "fake-1"
    # minimized from the program cut after the op the splat showed in
    first = FakeVm.instances[0].first_shown
    assert first is not None and record.original_ops == first[1] + 1
    assert campaign.stats.ops_ok > 0
    assert stats.duplicates > 0  # later programs that showed it again
    assert store.known("f-warn") and (tmp_path / "findings" / "f-warn").is_dir()
    assert len(campaign.corpus.programs) > 0 and campaign.corpus.pcs


def test_a_known_finding_of_an_earlier_campaign_is_not_redone(tmp_path: Path) -> None:
    run(tmp_path, reset_after_open, Budget(iterations=100))
    campaign, _store = run(tmp_path, reset_after_open, Budget(iterations=100))
    assert campaign.stats.findings == [] and campaign.stats.duplicates > 0


def test_a_once_per_boot_report_is_minimized_on_a_new_vm_per_try(tmp_path: Path) -> None:
    def lockdep(program: list[dict[str, Any]], vm: FakeVm) -> list[Finding]:
        return [LOCKDEP] if reset_after_open(program, vm) else []

    campaign, _store = run(tmp_path, lockdep, Budget(iterations=200), once=True)
    [record] = campaign.stats.findings
    assert ops(record.program) == ["open", "reset"] and record.reproduced
    assert record.extra == {"fresh_vm": True, "replayed": True}
    assert FakeVm.instances[0].boots > record.minimize_runs // 2


def test_a_warn_once_is_retried_on_a_new_vm_before_giving_up(tmp_path: Path) -> None:
    campaign, _store = run(tmp_path, reset_after_open, Budget(iterations=200), once=True)
    [record] = campaign.stats.findings
    assert record.reproduced and record.extra == {"fresh_vm": True, "replayed": True}


def test_a_leak_is_pinned_on_the_program_that_caused_it(tmp_path: Path) -> None:
    def leaky(program: list[dict[str, Any]], vm: FakeVm) -> list[Finding]:
        return [LEAK] if reset_after_open(program, vm) else []

    campaign, _store = run(tmp_path, leaky, Budget(iterations=200))
    [record] = campaign.stats.findings
    assert record.kind == "kmemleak" and ops(record.program) == ["open", "reset"]


def test_a_known_kernel_issue_is_counted_not_reported(tmp_path: Path) -> None:
    def known(program: list[dict[str, Any]], vm: FakeVm) -> list[Finding]:
        return [TYPE1_ORDER] if reset_after_open(program, vm) else []

    campaign, _store = run(tmp_path, known, Budget(iterations=200))
    assert campaign.stats.findings == []
    assert list(campaign.stats.known) == ["type1-notify-unmap-lock-order"]
    assert campaign.stats.known["type1-notify-unmap-lock-order"] > 0


def test_a_replaced_vm_is_retired_first_so_coverage_copies_keep_what_it_ran(
    tmp_path: Path,
) -> None:
    def known(program: list[dict[str, Any]], vm: FakeVm) -> list[Finding]:
        time.sleep(0.001)
        return [TYPE1_ORDER] if reset_after_open(program, vm) else []

    copies = Copies()
    campaign, _store = run(tmp_path, known, Budget(iterations=300), once=True, copies=copies)
    replaced = FakeVm.instances[0].boots - 1  # lockdep is off after a report: a new VM
    assert replaced > 1 and replaced == campaign.stats.known["type1-notify-unmap-lock-order"]
    retired = [boots for what, _w, boots, _at in copies.calls if what == "retire"]
    assert retired == list(range(1, replaced + 1))  # each VM once, before its successor
    takes = [(boots, at) for what, _w, boots, at in copies.calls if what == "take"]
    assert len(takes) > 1 and takes[-1][0] == replaced + 1  # the last copy: the last VM's
    assert [at for _b, at in takes] == sorted(at for _b, at in takes)
    assert {worker for _what, worker, _b, _at in copies.calls} == {0}


def test_a_copy_after_a_busy_stretch_is_labelled_with_the_latest_slot(tmp_path: Path) -> None:
    """Minimizing a finding can hold a worker past several copy slots; the copy it then takes
    holds the counters of now, so it must not carry a missed slot's label."""
    busy_s = 0.4
    done: list[int] = []

    def slow_once(program: list[dict[str, Any]], vm: FakeVm) -> list[Finding]:
        done.append(1)
        if len(done) == 1:  # the first program: the busy stretch starts near 0 s
            time.sleep(busy_s)
        return []

    copies = Copies()
    run(tmp_path, slow_once, Budget(iterations=40), copies=copies)
    labels = [at for what, _w, _b, at in copies.calls if what == "take"][:-1]  # not the last
    assert labels and all(abs(at / 0.05 - round(at / 0.05)) < 1e-6 for at in labels), (
        labels
    )  # slots
    assert labels == sorted(set(labels))
    # No label names a slot the busy program ran through (0.1 s of slack for a slow start).
    assert not [at for at in labels if 0.1 < at < busy_s - 0.1], labels


def test_latest_slot() -> None:
    assert campaign_mod.latest_slot(0.0, 60.0) == 0.0
    assert campaign_mod.latest_slot(59.9, 60.0) == 0.0
    assert campaign_mod.latest_slot(60.0, 60.0) == 60.0
    assert campaign_mod.latest_slot(401.0, 60.0) == 360.0


def test_the_budget_can_be_a_number_of_findings(tmp_path: Path) -> None:
    campaign, _store = run(tmp_path, reset_after_open, Budget(iterations=100_000, findings=1))
    assert len(campaign.stats.findings) == 1
    assert campaign.stats.iterations < 100_000


def test_budget() -> None:
    assert Budget(seconds=10).spent(10.0, 0) and not Budget(seconds=10).spent(9.9, 10**6)
    assert Budget(iterations=5).spent(0.0, 5) and not Budget().spent(1e9, 10**9)
    assert Budget(findings=2).spent(0.0, 0, 2) and not Budget(findings=2).spent(0.0, 0, 1)


def test_a_leak_window_holds_the_programs_since_the_scan_before_last_less_kmemleak_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(campaign_mod, "LEAK_AGE_S", 6.0)
    window = campaign_mod.LeakWindow()  # the campaign starts at 100
    for at, name in ((101, "a"), (110, "b"), (118, "c")):
        now[0] = at
        window.add([{"op": name}], boots=1)
    now[0] = 120.0
    assert window.due(20.0) and [p[0]["op"] for p in window.scanned()] == ["a", "b", "c"]
    now[0] = 125.0
    window.add([{"op": "d"}], boots=1)
    now[0] = 140.0
    # the scan at 120 may only have seen "a" to "c" changed: this one can report them
    assert [p[0]["op"] for p in window.scanned()] == ["a", "b", "c", "d"]
    now[0] = 145.0
    window.add([{"op": "e"}], boots=1)
    now[0] = 160.0
    # "a" and "b" were old and unchanged by the scan at 140: it reported them if they leaked
    assert [p[0]["op"] for p in window.scanned()] == ["c", "d", "e"]
    now[0] = 161.0
    window.add([{"op": "f"}], boots=2)  # a new VM: the old one's leaks went with it
    now[0] = 180.0
    assert [p[0]["op"] for p in window.scanned()] == ["f"]
