# SPDX-License-Identifier: MIT
"""Two sets of results compared test by test: a run without a patch and one with it, or two
kernels of one run. What got worse is a regression (a patch CI job gates on them):

    incomplete run  the new run did not end by itself (interrupted, an internal error, nothing
                    reached the driver) or misses shards: what it lacks cannot be compared
    gone kernel     a kernel of the base that the new side does not have
    new failure     not failed before (passed, skipped, or an expected failure); failed or
                    errored now
    known failure   passed before; an expected failure now (a known bug showed up)
    errno changed   failed both times, with other errno names in the failure
    new splat       a kernel splat fingerprint the base did not have for the test
    became skip     ran before (passed, failed or xfailed); skipped now: coverage lost
    gone test       in the base, not in the new run: coverage lost

and what got better or only changed is listed too: fixed (a failure or an expected failure
that passes now), gone splat, now runs, new test, new kernel. Tests pair by their id (the
node id without the kernel) within a kernel; when the two sides have one kernel each, or two
kernels are named, those two are paired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.report.results import BAD_OUTCOMES, Results, TestResult

REGRESSIONS = (
    "incomplete run",
    "gone kernel",
    "new failure",
    "known failure",
    "errno changed",
    "new splat",
    "became skip",
    "gone test",
)
OTHERS = ("fixed", "gone splat", "now runs", "new test", "new kernel")
# pytest's exit statuses of a run that ended by itself: 0 all passed, 1 some failed.
COMPLETE_EXITS = (0, 1)
KINDS = REGRESSIONS + OTHERS
_RAN = frozenset({"passed", "xpassed", "failed", "error", "xfailed"})


class CompareError(ValueError):
    """The two sides cannot be paired (no kernel in common, a kernel named that is not there)."""


@dataclass(frozen=True)
class Change:
    kind: str
    kernel: str  # "bookworm", or "base -> new" when the sides' kernels differ
    test: str
    base: str  # the base's outcome (with errnos, or the splat), "" when it had no such test
    new: str
    detail: str = ""  # the new failure's message, or the splat's headline

    @property
    def regression(self) -> bool:
        return self.kind in REGRESSIONS


@dataclass(frozen=True)
class Comparison:
    base_label: str
    new_label: str
    pairs: tuple[tuple[str, str], ...]  # (base kernel, new kernel)
    changes: tuple[Change, ...]
    compared: int  # tests found on both sides

    @property
    def regressions(self) -> list[Change]:
        return [change for change in self.changes if change.regression]

    def counts(self) -> dict[str, int]:
        return {kind: sum(c.kind == kind for c in self.changes) for kind in KINDS}


def kernel_pairs(
    base: Results, new: Results, kernels: tuple[str, str] | None = None
) -> list[tuple[str, str]]:
    """Which kernel of the base goes with which of the new side."""
    base_kernels, new_kernels = base.kernels(), new.kernels()
    if kernels is not None:
        sides = ((kernels[0], "base", base_kernels), (kernels[1], "new", new_kernels))
        for name, side, found in sides:
            if name not in found:
                raise CompareError(f"no kernel {name} in the {side} results: {', '.join(found)}")
        return [kernels]
    if len(base_kernels) == 1 and len(new_kernels) == 1:
        return [(base_kernels[0], new_kernels[0])]
    common = [k for k in base_kernels if k in new_kernels]
    if not common:
        raise CompareError(
            f"the two sides share no kernel (base: {', '.join(base_kernels) or 'none'}; new: "
            f"{', '.join(new_kernels) or 'none'}): name the two to compare with --kernels A,B"
        )
    return [(k, k) for k in common]


def compare(
    base: Results,
    new: Results,
    *,
    kernels: tuple[str, str] | None = None,
    labels: tuple[str, str] = ("base", "new"),
) -> Comparison:
    pairs = kernel_pairs(base, new, kernels)
    changes: list[Change] = list(_run_changes(base, new, pairs, explicit=kernels is not None))
    compared = 0
    for base_kernel, new_kernel in pairs:
        kernel = base_kernel if base_kernel == new_kernel else f"{base_kernel} -> {new_kernel}"
        before = {t.id: t for t in base.tests if t.kernel == base_kernel}
        after = {t.id: t for t in new.tests if t.kernel == new_kernel}
        for test_id in sorted(before.keys() | after.keys()):
            old, now = before.get(test_id), after.get(test_id)
            if old is not None and now is not None:
                compared += 1
            changes += _changes(kernel, test_id, old, now)
    order = {kind: i for i, kind in enumerate(KINDS)}
    changes.sort(key=lambda c: (order[c.kind], c.kernel, c.test))
    return Comparison(labels[0], labels[1], tuple(pairs), tuple(changes), compared)


def _run_changes(
    base: Results, new: Results, pairs: list[tuple[str, str]], *, explicit: bool
) -> Iterable[Change]:
    status = new.run.exit_status
    if status is not None and status not in COMPLETE_EXITS:
        yield Change("incomplete run", "", "", str(base.run.exit_status), str(status),
                     f"the new run exited {status}")  # fmt: skip
    if new.run.missing_shards:
        yield Change("incomplete run", "", "", "", "", "shards missing: "
                     + ", ".join(new.run.missing_shards))  # fmt: skip
    one_each = len(base.kernels()) == 1 and len(new.kernels()) == 1
    if explicit or one_each:
        return  # the kernels named, or the one of each side: nothing else was to be paired
    paired_base = {b for b, _ in pairs}
    paired_new = {n for _, n in pairs}
    for kernel in base.kernels():
        if kernel not in paired_base:
            yield Change("gone kernel", kernel, "", "", "", "the new run has no results for it")
    for kernel in new.kernels():
        if kernel not in paired_new:
            yield Change("new kernel", kernel, "", "", "")


def _state(test: TestResult) -> str:
    if test.bad and test.errnos:
        return f"{test.outcome} ({', '.join(test.errnos)})"
    return test.outcome


def _changes(
    kernel: str, test_id: str, old: TestResult | None, now: TestResult | None
) -> Iterable[Change]:
    if old is None:
        assert now is not None
        yield Change("new test", kernel, test_id, "", _state(now), now.message or "")
        return
    if now is None:
        yield Change("gone test", kernel, test_id, _state(old), "")
        return
    before, after = old.outcome, now.outcome
    change = Change("", kernel, test_id, _state(old), _state(now), now.message or "")
    if after in BAD_OUTCOMES and before not in BAD_OUTCOMES:
        yield _kind(change, "new failure")
    elif after == "xfailed" and before in ("passed", "xpassed"):
        yield _kind(change, "known failure")
    elif before in (*BAD_OUTCOMES, "xfailed") and after in ("passed", "xpassed"):
        yield _kind(change, "fixed")
    elif after in BAD_OUTCOMES and before in BAD_OUTCOMES and old.errnos != now.errnos:
        yield _kind(change, "errno changed")
    if after == "skipped" and before in _RAN:
        yield _kind(change, "became skip")
    elif before == "skipped" and after in _RAN:
        yield _kind(change, "now runs")
    old_prints = {s.fingerprint for s in old.splats}
    new_prints = {s.fingerprint for s in now.splats}
    for splat in now.splats:
        if splat.fingerprint not in old_prints:
            yield Change("new splat", kernel, test_id, "", f"{splat.kind} {splat.fingerprint}",
                         splat.headline)  # fmt: skip
    for splat in old.splats:
        if splat.fingerprint not in new_prints:
            yield Change("gone splat", kernel, test_id, f"{splat.kind} {splat.fingerprint}", "",
                         splat.headline)  # fmt: skip


def _kind(change: Change, kind: str) -> Change:
    return Change(kind, change.kernel, change.test, change.base, change.new, change.detail)


def render_table(comparison: Comparison, width: int = 100) -> str:
    """The comparison for a terminal: counts, then one line per change, regressions first."""
    counts = comparison.counts()
    lines = [
        f"{comparison.base_label} -> {comparison.new_label}: {comparison.compared} tests on "
        "both sides, kernels "
        + ", ".join(a if a == b else f"{a} -> {b}" for a, b in comparison.pairs),
        "regressions: "
        + ", ".join(f"{counts[k]} {k}" for k in REGRESSIONS)
        + "; also: "
        + ", ".join(f"{counts[k]} {k}" for k in OTHERS),
    ]
    if not comparison.changes:
        return "\n".join([*lines, "no change"]) + "\n"
    lines.append("")
    lines.append(f"{'change':<14} {'kernel':<12} {'base -> new':<30} test")
    for change in comparison.changes:
        states = f"{change.base or '-'} -> {change.new or '-'}"
        lines.append(f"{change.kind:<14} {change.kernel:<12} {states:<30} {change.test}")
        if change.detail and change.kind != "new test":
            detail = (
                change.detail if len(change.detail) <= width else change.detail[: width - 3] + "..."
            )
            lines.append(f"{'':<14} {detail}")
    return "\n".join(lines) + "\n"


__all__ = [
    "KINDS",
    "REGRESSIONS",
    "Change",
    "CompareError",
    "Comparison",
    "compare",
    "kernel_pairs",
    "render_table",
]
