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

import re
import time
from typing import Any

from harness.core.debug_checks import Kmemleak, split_reports
from harness.core.kmsg import KmsgReader
from harness.fuzz.executor import Executor, chosen_type

LEAK_AGE_S = 6.0  # kmemleak reports an unreferenced object only once it is 5 s old
SETTLE_S = 0.5  # a report printed from another context (a workqueue) lands a little later
REPORT = re.compile(
    r"(?:^|\] )(?:BUG: |WARNING: |Oops|general protection fault|kernel BUG at|UBSAN: |"
    r"Kernel panic|INFO: task .* blocked)"
)
LEAK_HEADLINE = re.compile(r"^kmemleak: .*, allocated in (\S+)$")


def same_report(line: str) -> str:
    """A report's line without what changes between runs: printk's prefix, addresses, CPU and
    PID numbers, offsets into functions, directories of build paths."""
    text = re.sub(r"^(?:<\d>)?(?:\[\s*\d+\.\d+\]\s?)?(?:\[\s*[TC]\d+\]\s?)?", "", line.strip())
    text = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", text)
    text = re.sub(r"(?:/[\w.+-]+)+/([\w.+-]+)", r"\1", text)
    text = re.sub(r"\b(?:0x)?[0-9a-fA-F]{6,}\b", "X", text)
    text = re.sub(r"\d+", "N", text)
    return " ".join(text.split())


def replay(program: list[dict[str, Any]], headline: str) -> list[str]:
    """The kernel's reports of `headline`'s problem while `program` ran ([] when none)."""
    leak = LEAK_HEADLINE.match(headline)
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
    time.sleep(LEAK_AGE_S)
    allocator = leak.group(1)
    return [
        "\n".join(block)
        for block in split_reports(kmemleak.scan())
        if any(allocator in line for line in block[1:])
    ]


__all__ = ["replay", "same_report"]
