# SPDX-License-Identifier: MIT
"""Kernel health per test: the kernel log lines and taint mask around a test, judged.

    findings = item_findings(done)          # done: protocol.ItemDone from the runner
    apply_findings(reports, findings)       # the test fails, showing each splat

A finding is a splat from harness.vm.console (WARN, BUG, Oops, KASAN, UBSAN, lockdep, RCU
stall, hung task, soft lockup, panic), a leak from the kmemleak scan after a test module (the
module's last test carries it; the allocation backtrace says where), taint bits the test set,
or what a locked-down kernel (Secure Boot) refused it. Each has a fingerprint, so the same bug
is recognised across runs and kernels. Taint bits that loading a module sets (P, O, E) are not
findings: loading the vendor module sets them by design. A finding that is a known kernel bug
(harness.plugin.known_issues) makes an otherwise passing test an expected failure instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from harness.core.debug_checks import split_reports
from harness.core.kmsg import MODULE_TAINTS, taint_letters
from harness.plugin.known_issues import KnownIssue, known_issue_of
from harness.plugin.protocol import ItemDone
from harness.vm.console import ConsoleScanner, Splat, normalise, strip_prefix

MAX_EXCERPT_LINES = 60
# kmemleak reports after its periodic scan, in one line; the leaks are in its debugfs file.
_KMEMLEAK = re.compile(r"^kmemleak: \d+ new suspected memory leaks?")
# What a locked-down kernel (Secure Boot) refused the suite: the test did something lockdown
# forbids, which a Secure Boot host would refuse too. The kernel rate-limits these lines
# (pr_notice_ratelimited): a burst in one test can hide a later test's.
_LOCKDOWN = re.compile(r"^Lockdown: \S+: .+ is restricted")
# After these the kernel cannot be trusted for the next test (see SuiteRun: the VM is replaced).
FATAL_KINDS = frozenset({"bug", "oops", "panic"})
SECTION = "kernel health"
KNOWN_SECTION = "known kernel issues"
_LEAK_FRAME = re.compile(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
# The allocator's own frames say nothing about who leaked.
_ALLOCATOR_FRAMES = re.compile(
    r"^(?:kmemleak_|__?k[mvz]alloc|kmalloc_|__kmalloc|kmem_cache_|"
    r"slab_|__slab|kvmalloc|__kvmalloc|vmalloc|__vmalloc|alloc_pages|"
    r"__alloc_pages|__alloc|kasan_|__kasan_|trace_)"
)
WHEN_MODULE_SCAN = "found by the kmemleak scan after this test's module"


@dataclass(frozen=True)
class Finding:
    kind: str  # a SplatKind value, "kmemleak", "lockdown" or "taint"
    headline: str
    fingerprint: str
    lines: tuple[str, ...]
    when: str = "during this test"

    def render(self) -> str:
        head = f"{self.kind.upper()} {self.when} [fingerprint {self.fingerprint}]"
        excerpt = self.lines[:MAX_EXCERPT_LINES]
        more = len(self.lines) - len(excerpt)
        body = [f"    {line}" for line in excerpt]
        if more > 0:
            body.append(f"    ... {more} more line(s)")
        return "\n".join([head, f"  {self.headline}", *body])


def from_splat(splat: Splat, when: str = "during this test") -> Finding:
    return Finding(splat.kind.value, splat.headline, splat.fingerprint, splat.lines, when)


def fingerprint_of(*parts: str) -> str:
    """A finding's fingerprint from what identifies it (never addresses or times)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def scan_kernel_log(lines: Sequence[str], when: str = "during this test") -> list[Finding]:
    """The splats and kmemleak reports in `lines` (console-style kernel log lines)."""
    scanner = ConsoleScanner()
    found: list[Finding] = []
    for line in lines:
        scanner.feed(line)
        message = strip_prefix(line)
        for kind, pattern in (("kmemleak", _KMEMLEAK), ("lockdown", _LOCKDOWN)):
            if pattern.match(message):
                fingerprint = fingerprint_of(kind, normalise(message))
                found.append(Finding(kind, line, fingerprint, (line,), when))
    return [from_splat(s, when) for s in scanner.verdict().splats] + found


def leak_findings(report: Sequence[str], when: str = WHEN_MODULE_SCAN) -> list[Finding]:
    """One finding per unreferenced object in a kmemleak report, fingerprinted by its
    allocation backtrace (the allocator's own frames left out)."""
    found: list[Finding] = []
    for block in split_reports(list(report)):
        frames = [m.group(1) for line in block if (m := _LEAK_FRAME.match(line))]
        callers = [name for name in frames if not _ALLOCATOR_FRAMES.match(name)][:4]
        where = callers[0] if callers else "?"
        headline = f"kmemleak: {block[0].strip().rstrip(':')}, allocated in {where}"
        found.append(
            Finding("kmemleak", headline, fingerprint_of("kmemleak", *callers), tuple(block), when)
        )
    if report and not found:  # e.g. the scan itself failed
        text = " ".join(report)
        found.append(
            Finding("kmemleak", text, fingerprint_of("kmemleak", normalise(text)), (), when)
        )
    return found


def taint_finding(before: int, after: int) -> Finding | None:
    """New taint bits, except the ones loading a module sets."""
    new = taint_letters(after & ~before)
    counted = "".join(letter for letter in new if letter not in MODULE_TAINTS)
    if not counted:
        return None
    headline = (
        f"the kernel's taint changed: +{counted} "
        f"(was {taint_letters(before) or '-'}, now {taint_letters(after)})"
    )
    return Finding("taint", headline, fingerprint_of("taint", counted), ())


def item_findings(done: ItemDone) -> list[Finding]:
    """Everything wrong in one item's kernel log and taint, in the order it happened."""
    findings = scan_kernel_log(done.before_log, "just before this test (between tests)")
    findings += scan_kernel_log(done.kernel_log)
    taint = taint_finding(done.taint_before, done.taint_after)
    if taint is not None:
        findings.append(taint)
    findings += leak_findings(done.kmemleak)
    return findings


def render(findings: Sequence[Finding]) -> str:
    what = ", ".join(sorted({f.kind for f in findings}))
    head = f"kernel health: {len(findings)} problem(s) in the kernel log ({what})"
    return "\n\n".join([head, *(f.render() for f in findings)])


def apply_findings(reports: Sequence[pytest.TestReport], findings: Sequence[Finding]) -> None:
    """Fail the test for `findings`: its call report (else setup report) shows them.

    A passed or skipped report becomes a failure whose message is the splats; an already
    failed one keeps its traceback and gets a "kernel health" section. Findings that are all
    known kernel issues make a passed test xfailed instead, naming the issues.
    """
    if not findings or not reports:
        return
    known: list[tuple[Finding, KnownIssue]] = []
    unknown: list[Finding] = []
    for finding in findings:
        issue = known_issue_of(finding)
        if issue is None:
            unknown.append(finding)
        else:
            known.append((finding, issue))
    by_when = {report.when: report for report in reports}
    target = by_when.get("call") or by_when.get("setup") or reports[0]
    if known:
        target.sections.append((KNOWN_SECTION, _render_known(known)))
    if unknown:
        text = render(unknown)
        if target.failed:
            target.sections.append((SECTION, text))
        else:
            target.outcome = "failed"
            target.longrepr = text
    elif known and target.passed:
        target.outcome = "skipped"
        target.wasxfail = "; ".join(sorted({issue.reason() for _, issue in known}))
    for report in reports:
        report.user_properties.extend(
            ("kernel_splat", f"{f.kind} {f.fingerprint} {f.headline}") for f in findings
        )


def _render_known(known: Sequence[tuple[Finding, KnownIssue]]) -> str:
    parts = [f"{issue.reason()}\n{finding.render()}" for finding, issue in known]
    return "\n\n".join(parts)


def is_fatal(findings: Sequence[Finding]) -> bool:
    return any(f.kind in FATAL_KINDS for f in findings)


__all__ = [
    "Finding",
    "apply_findings",
    "fingerprint_of",
    "is_fatal",
    "item_findings",
    "leak_findings",
    "render",
    "scan_kernel_log",
    "taint_finding",
]
