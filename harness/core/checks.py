# SPDX-License-Identifier: MIT
"""Assertions for check scripts that run in a guest (tests/vm/guest/*, harness.nested): each
says what differs, and `where` names the script line whose check failed, not the helper's.

    equal(dev.read32(REG_ID), 0x1de5, "ID register")      # "ID register: got 0x0, expected 0x1de5"
    same_bytes(back, data, "device->guest copy")          # "... first at offset 0x10 (...)"
    expect_errno(errno.EINVAL, lambda: f(), "unmap")       # "unmap: succeeded, expected EINVAL"

Each script keeps its own way of reporting results (a JSON line per check, or a dict); these
only make the failures readable. Standard library only: the guest gets this tree.
"""

from __future__ import annotations

import errno
import time
import traceback
from collections.abc import Callable, Collection
from typing import TypeVar

PAGE = 4096
T = TypeVar("T")


class CheckError(AssertionError):
    """A check found the device, the kernel or QEMU not doing what it should."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckError(message)


def attempt(problems: list[str], what: str, action: Callable[[], object]) -> None:
    """One step of a clean-up: its failure goes into `problems`, and the next step runs."""
    try:
        action()
    except Exception as exc:  # whatever broke, the rest of the clean-up must still run
        problems.append(f"{what}: {type(exc).__name__}: {exc}")


def poll_for(probe: Callable[[], T], timeout: float, interval: float = 0.5) -> T:
    """`probe()`'s first truthy value within `timeout`, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_until(done: Callable[[], bool], what: str, timeout: float, interval: float = 0.05) -> None:
    """Poll `done`; a CheckError naming `what` if it does not hold within `timeout`."""
    expect(poll_for(done, timeout, interval), f"timed out after {timeout:.0f} s waiting for {what}")


def equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        shown = [hex(x) if isinstance(x, int) else repr(x) for x in (actual, expected)]
        raise CheckError(f"{what}: got {shown[0]:.300}, expected {shown[1]:.300}")


def first_difference(got: bytes, expected: bytes) -> str:
    for index, (a, b) in enumerate(zip(got, expected, strict=False)):
        if a != b:
            return f"first difference at offset {index:#x}: {a:#04x} != {b:#04x}"
    return f"lengths {len(got)} != {len(expected)}"


def same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    if actual != expected:
        raise CheckError(f"{what}: differs ({first_difference(actual, expected)})")


def differ(a: bytes, b: bytes, what: str) -> None:
    """A precondition: without a difference, the comparison that follows would prove nothing."""
    if a == b:
        raise CheckError(f"{what} are identical (the check needs them to differ)")


def errno_text(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def expect_errno(err: int, action: Callable[[], object], what: str) -> None:
    try:
        action()
    except OSError as exc:
        if exc.errno != err:
            raise CheckError(
                f"{what}: failed with {errno_text(exc.errno or 0)}, expected {errno_text(err)}"
            ) from None
        return
    raise CheckError(f"{what}: succeeded, expected {errno_text(err)}")


def pages_spanned(start: int, length: int, page: int = PAGE) -> int:
    return (start + length - 1) // page - start // page + 1


def pattern(length: int, seed: int) -> bytes:
    """Bytes that differ at every offset and between seeds (a shifted copy would not match)."""
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(length))


def where(exc: BaseException, script: str, helpers: Collection[str] = ()) -> str:
    """ " (line N)": the line of `script` (a file name) that was running when `exc` was
    raised, past the script's own `helpers` (function names), or "" when none was."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == script]
    frames = [f for f in frames if f.name not in helpers] or frames
    return f" (line {frames[-1].lineno})" if frames else ""


def describe(exc: BaseException, script: str, helpers: Collection[str] = ()) -> str:
    """The failure as a result line: "<Exception>: <message> (line N)"."""
    kind = "" if isinstance(exc, CheckError) else f"{type(exc).__name__}: "
    return f"{kind}{exc}{where(exc, script, helpers)}"
