# SPDX-License-Identifier: MIT
"""Kernel console parser: panics, Oopses, BUGs, WARNINGs, UBSAN, hangs and the ready marker.

Pure functions over console text. A *splat* is one kernel report: it starts at a headline
("------------[ cut here ]------------", "BUG:", "Oops:", "Kernel panic - not syncing", ...)
and ends at its end marker ("---[ end trace ... ]---"), after its call trace, or after
`MAX_SPLAT_LINES`. Each splat gets a fingerprint built only from what identifies the bug (the
normalised headline and the call trace's function names), so the same bug gives the same
fingerprint across boots, kernels, KASLR offsets and CPUs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

READY_MARKER = "HARNESS-READY"
MAX_SPLAT_LINES = 120
TRACE_FRAMES = 6


class SplatKind(StrEnum):
    """What one kernel report is, in increasing severity."""

    WARNING = "warning"
    HUNG = "hung"
    BUG = "bug"
    OOPS = "oops"
    PANIC = "panic"


_SEVERITY = list(SplatKind)


class VerdictKind(StrEnum):
    """The console as a whole: clean so far, ready, or the worst report seen."""

    CLEAN = "clean"
    READY = "ready"
    WARNING = "warning"
    HUNG = "hung"
    BUG = "bug"
    OOPS = "oops"
    PANIC = "panic"


@dataclass(frozen=True)
class Splat:
    kind: SplatKind
    line_number: int  # 0-based index of the first line in the console
    headline: str  # the line naming the bug, as printed ("cut here" is skipped)
    lines: tuple[str, ...]  # the excerpt, as printed (timestamps kept for humans)
    signature: str  # normalised headline + frames: what the fingerprint hashes
    fingerprint: str


@dataclass(frozen=True)
class ConsoleVerdict:
    kind: VerdictKind
    ready: bool
    splats: tuple[Splat, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.splats)

    @property
    def fatal(self) -> bool:
        """The guest is dead: nothing more will come from it."""
        return self.kind is VerdictKind.PANIC

    @property
    def first(self) -> Splat | None:
        """The first report: usually the cause, later ones are consequences."""
        return self.splats[0] if self.splats else None

    @property
    def first_bad_line(self) -> str | None:
        return self.first.headline if self.first else None

    @property
    def excerpt(self) -> tuple[str, ...]:
        return self.first.lines if self.first else ()

    @property
    def fingerprint(self) -> str | None:
        return self.first.fingerprint if self.first else None


# printk prefixes: optional "<4>" level, "[    1.234567]" time, "[  T123]" caller id.
_PREFIX = re.compile(r"^(?:<\d>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?")

_HEADLINES: tuple[tuple[re.Pattern[str], SplatKind], ...] = (
    (re.compile(r"^Kernel panic - not syncing"), SplatKind.PANIC),
    (re.compile(r"^-+\[ cut here \]-+"), SplatKind.WARNING),  # refined by the next headline
    (re.compile(r"^WARNING: "), SplatKind.WARNING),
    (re.compile(r"^kernel BUG at "), SplatKind.BUG),
    (re.compile(r"BUG: soft lockup|BUG: workqueue lockup"), SplatKind.HUNG),
    (re.compile(r"^(?:\S+: )?BUG: "), SplatKind.BUG),
    (re.compile(r"^Oops: "), SplatKind.OOPS),
    (re.compile(r"^general protection fault"), SplatKind.OOPS),
    (re.compile(r"^INFO: task \S+ blocked for more than"), SplatKind.HUNG),
    (re.compile(r"^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:stalls|stall)"), SplatKind.HUNG),
    (re.compile(r"^UBSAN: "), SplatKind.WARNING),  # undefined behaviour, reported as it runs
)
# One-line markers of a boot that will not reach init (Debian's initramfs-tools).
_STUCK_BOOT = re.compile(r"Gave up waiting for root|Dropping to a shell!")
_END = re.compile(r"^---\[ end (?:trace|Kernel panic)")
_END_PANIC = re.compile(r"^---\[ end Kernel panic")
_TRACE_START = re.compile(r"^(?:Call Trace:|RIP: )")
_TASK_END = re.compile(r"^\s*</TASK>")
# After "</TASK>" the report may still print its register dump and module list.
_TRAILER = re.compile(
    r"^(?:Modules linked in|CR2: |RIP: |Code: |RSP: |R[A-Z0-9]{2}: |FS: |CS: |PKRU: "
    r"|Kernel Offset: |---\[ end |DR[0-9]: |\s*<TASK>|\s*Call Trace:|note: |Fixing recursive)"
)

_FRAME = re.compile(r"^\s*(\?\s+)?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(\w+)\])?")
_KERNEL_RIP = re.compile(r"^RIP: 0010:([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(\w+)\])?")
# Frames that every report of a kind shares: they say how the kernel reported, not what failed.
_GENERIC_FRAMES = frozenset(
    {
        "dump_stack",
        "dump_stack_lvl",
        "show_stack",
        "panic",
        "__warn",
        "warn_slowpath_fmt",
        "report_bug",
        "handle_bug",
        "exc_invalid_op",
        "asm_exc_invalid_op",
        "asm_exc_page_fault",
        "exc_page_fault",
        "do_trap",
        "do_error_trap",
        "die",
        "oops_end",
        "page_fault_oops",
        "__schedule",
        "schedule",
    }
)
# The sanitizers' own reporting functions, whatever their suffix.
_GENERIC_PREFIXES = ("__ubsan_handle_", "ubsan_", "kasan_", "__kasan_", "print_report")
# GCC clones differ between builds of the same code: crashme_init.cold -> crashme_init.
_CLONE_SUFFIX = re.compile(r"\.(?:cold|constprop|isra|part|llvm)(?:\.\d+)?")


def strip_prefix(line: str) -> str:
    """The message without printk's level, timestamp and caller id."""
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


def is_ready_line(line: str, marker: str = READY_MARKER) -> bool:
    return strip_prefix(line).strip() == marker


def normalise(message: str) -> str:
    """A message with everything run-specific removed; function and module names kept."""
    text = re.sub(r"CPU: \d+ PID: \d+", "", message)
    text = re.sub(r"CPU#\d+", "CPU#N", text)
    text = re.sub(r"(\w[\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+", r"\1", text)  # func+0x1a/0x40
    text = re.sub(r"(?:/[\w.+-]+)+/([\w.+-]+)", r"\1", text)  # paths: basename only
    text = re.sub(r"\b0x[0-9a-fA-F]+\b", "X", text)
    text = re.sub(r"\b[0-9a-fA-F]{8,}\b", "X", text)
    text = re.sub(r"(\w):\d+\b", r"\1:N", text)  # comm:pid, file:line
    text = re.sub(r"\b\d+(s|ms|us|ns)\b", r"N\1", text)  # "stuck for 23s!"
    text = re.sub(r"\b\d+\b", "N", text)
    return " ".join(text.split())


def _frame_name(match: re.Match[str], name_group: int, module_group: int) -> str:
    name = _CLONE_SUFFIX.sub("", match.group(name_group))
    module = match.group(module_group)
    return f"{name} [{module}]" if module else name


@dataclass
class _OpenSplat:
    kind: SplatKind
    line_number: int
    lines: list[str] = field(default_factory=list)
    headline: str = ""
    headline_raw: str = ""
    in_trace: bool = False
    after_task: bool = False
    frames: list[str] = field(default_factory=list)
    rip: str | None = None

    def add_headline(self, raw: str, message: str, kind: SplatKind) -> None:
        if _SEVERITY.index(kind) > _SEVERITY.index(self.kind):
            self.kind = kind
        # "cut here" says nothing; the line after it names the bug.
        if not self.headline or self.headline.startswith("-"):
            self.headline = message
            self.headline_raw = raw

    def add_trace_line(self, message: str) -> None:
        rip = _KERNEL_RIP.match(message)
        if rip and self.rip is None:
            self.rip = _frame_name(rip, 1, 2)
        frame = _FRAME.match(message)
        if frame and not frame.group(1) and len(self.frames) < TRACE_FRAMES:
            name = _frame_name(frame, 2, 3)
            bare = name.split(" ")[0]
            if bare not in _GENERIC_FRAMES and not bare.startswith(_GENERIC_PREFIXES):
                self.frames.append(name)

    def close(self) -> Splat:
        frames = list(self.frames)
        # Where a lockup's CPU was interrupted is a sample, not the bug; a fault's RIP is.
        if self.rip and self.rip not in frames and self.kind is not SplatKind.HUNG:
            frames.insert(0, self.rip)
        signature = "\n".join([self.kind.value, normalise(self.headline), *frames[:TRACE_FRAMES]])
        digest = hashlib.sha256(signature.encode()).hexdigest()[:16]
        return Splat(
            self.kind, self.line_number, self.headline_raw, tuple(self.lines), signature, digest
        )


class ConsoleScanner:
    """Incremental parser: feed console lines in order, ask for the verdict at any time."""

    def __init__(self, ready_marker: str = READY_MARKER) -> None:
        self._ready_marker = ready_marker
        self._ready = False
        self._count = 0
        self._open: _OpenSplat | None = None
        self._closed: list[Splat] = []

    def feed(self, line: str) -> None:
        raw = line.rstrip("\r\n")
        message = strip_prefix(raw)
        number = self._count
        self._count += 1
        if message.strip() == self._ready_marker:
            self._ready = True
            return
        if self._open is not None and self._continues(self._open, message):
            self._extend(self._open, raw, message)
            return
        self._close()
        headline = _headline_kind(message)
        if headline is not None:
            self._open = _OpenSplat(headline, number)
            self._extend(self._open, raw, message)
        elif _STUCK_BOOT.search(message) or _END_PANIC.match(message):
            # A stuck initramfs, or a panic whose start was lost (log truncated).
            kind = SplatKind.HUNG if _STUCK_BOOT.search(message) else SplatKind.PANIC
            self._closed.append(_OpenSplat(kind, number, [raw], message, raw).close())

    def feed_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)

    def verdict(self) -> ConsoleVerdict:
        splats = list(self._closed)
        if self._open is not None:
            splats.append(self._open.close())
        if splats:
            worst = max((s.kind for s in splats), key=_SEVERITY.index)
            kind = VerdictKind(worst.value)
        else:
            kind = VerdictKind.READY if self._ready else VerdictKind.CLEAN
        return ConsoleVerdict(kind, self._ready, tuple(splats))

    def _continues(self, splat: _OpenSplat, message: str) -> bool:
        if len(splat.lines) >= MAX_SPLAT_LINES:
            return False
        if _END.match(message):
            return True
        if _headline_kind(message) is not None:
            # Before its trace a report may print several headlines ("BUG: ... NULL pointer"
            # then "Oops:"); once the trace started, a headline is a new report.
            return not splat.in_trace
        if splat.after_task:
            return bool(_TRAILER.match(message))
        return True

    def _extend(self, splat: _OpenSplat, raw: str, message: str) -> None:
        splat.lines.append(raw)
        kind = _headline_kind(message)
        if kind is not None:
            splat.add_headline(raw, message, kind)
        if _TRACE_START.match(message):
            splat.in_trace = True
        if _TASK_END.match(message):
            splat.after_task = True
        splat.add_trace_line(message)
        if _END.match(message):
            self._close()

    def _close(self) -> None:
        if self._open is not None:
            self._closed.append(self._open.close())
            self._open = None


def _headline_kind(message: str) -> SplatKind | None:
    if _END.match(message):
        return None
    for pattern, kind in _HEADLINES:
        if pattern.search(message):
            return kind
    return None


def parse_console(lines: Iterable[str], ready_marker: str = READY_MARKER) -> ConsoleVerdict:
    """The verdict on a whole console log (an iterable of lines, e.g. an open file)."""
    scanner = ConsoleScanner(ready_marker)
    scanner.feed_all(lines)
    return scanner.verdict()
