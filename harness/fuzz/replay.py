# SPDX-License-Identifier: MIT
"""A finding's program run once more, where the device is: what the fuzzer's reproducers call.

    problems = replay(PROGRAM, HEADLINE)        # the kernel's reports of that problem; []: fixed

The program runs on a new device of the type HARNESS_MDEV_TYPE names (our small type by
default). The kernel log it caused is searched for reports (BUG, WARNING, Oops, KASAN, UBSAN,
panic) whose headline is the finding's, run-specific numbers aside (addresses, CPU, PID,
timestamps, build paths); a leak's headline names the function that allocated, and kmemleak
is asked once the objects are old enough to be reported. Other reports are not this finding's
business. Standard library only: the reproducer runs in a guest or on a host with the device.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

from harness.core.debug_checks import (
    DEBUGFS,
    Kmemleak,
    lockdep_live,
    mount_debugfs,
    split_reports,
)
from harness.core.kmsg import KmsgReader
from harness.fuzz.executor import Executor, chosen_type
from harness.mdev.choice import TYPE_ENV

LEAK_AGE_S = 6.0  # kmemleak reports an unreferenced object only once it is 5 s old
SETTLE_S = 0.5  # a report printed from another context (a workqueue) lands a little later
REPORT = re.compile(
    r"(?:^|\] )(?:BUG: |WARNING: |Oops|general protection fault|kernel BUG at|UBSAN: |"
    r"Kernel panic|INFO: task .* blocked)"
)
LEAK_HEADLINE = re.compile(r"^kmemleak: .*, allocated in (\S+)$")
# Reports the kernel makes once per boot (lockdep switches itself off after its first).
ONCE_PER_BOOT = re.compile(
    r"possible (?:circular|recursive) locking|inconsistent lock state|bad unlock balance|"
    r"suspicious RCU usage|lock held when returning"
)
CLEAR_WARN_ONCE = f"{DEBUGFS}/clear_warn_once"


def same_report(line: str) -> str:
    """A report's line without what changes between runs: printk's prefix, addresses, CPU and
    PID numbers, offsets into functions, directories of build paths."""
    text = re.sub(r"^(?:<\d>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?", "", line.strip())
    text = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", text)
    text = re.sub(r"(?:/[\w.+-]+)+/([\w.+-]+)", r"\1", text)
    text = re.sub(r"\b(?:0x)?[0-9a-fA-F]{6,}\b", "X", text)
    text = re.sub(r"\d+", "N", text)
    return " ".join(text.split())


def replay(program: list[dict[str, Any]], headline: str, mdev_type: str | None = None) -> list[str]:
    """The kernel's reports of `headline`'s problem while `program` ran ([] when none), on a
    new device of `mdev_type` (HARNESS_MDEV_TYPE, when set, wins: the same driver may name
    its types otherwise on another host)."""
    if mdev_type and not os.environ.get(TYPE_ENV):
        os.environ[TYPE_ENV] = mdev_type
    leak = LEAK_HEADLINE.match(headline)
    if ONCE_PER_BOOT.search(headline) and lockdep_live() is False:
        raise ReplayError(
            "lockdep has reported once in this boot and is off: it would not report this again"
        )
    _clear_warn_once()
    log = KmsgReader.open()
    kmemleak = Kmemleak.find() if leak else None
    if kmemleak is not None:
        kmemleak.clear()
    try:
        with Executor(chosen_type()) as executor:
            executor.run(program)
        time.sleep(SETTLE_S)
        lines = log.drain()
    finally:
        log.close()
    if leak is None:
        wanted = same_report(headline)
        return [line for line in lines if REPORT.search(line) and same_report(line) == wanted]
    if kmemleak is None:
        raise RuntimeError("the finding is a leak and this kernel has no kmemleak to see it")
    allocator = leak.group(1)
    report = kmemleak.settle_and_scan(LEAK_AGE_S)
    return [
        "\n".join(block)
        for block in split_reports(report)
        if any(allocator in line for line in block[1:])
    ]


class ReplayError(RuntimeError):
    """This kernel cannot show the finding again now; the message says why."""


def _clear_warn_once() -> None:
    """Let WARN_ONCE and friends warn again (debugfs' clear_warn_once), if the kernel can."""
    mount_debugfs()
    with contextlib.suppress(OSError), open(CLEAR_WARN_ONCE, "w", encoding="ascii") as handle:
        handle.write("1")


__all__ = ["ReplayError", "replay", "same_report"]
