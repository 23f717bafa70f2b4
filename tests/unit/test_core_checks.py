# SPDX-License-Identifier: MIT
"""The guest scripts' assertions: messages that say what differs, and the failing line."""

from __future__ import annotations

import errno

import pytest

from harness.core.checks import (
    CheckError,
    describe,
    differ,
    equal,
    expect_errno,
    pages_spanned,
    poll_for,
    same_bytes,
    wait_until,
)


def test_messages_say_what_differs() -> None:
    with pytest.raises(CheckError, match=r"^ID: got 0x0, expected 0x1de5$"):
        equal(0, 0x1DE5, "ID")
    with pytest.raises(CheckError, match=r"copy: differs \(first difference at offset 0x2: "):
        same_bytes(b"abXd", b"abcd", "copy")
    with pytest.raises(CheckError, match=r"lengths 3 != 4"):
        same_bytes(b"abc", b"abcd", "copy")
    with pytest.raises(CheckError, match="identical"):
        differ(b"a", b"a", "the two streams")


def test_expect_errno_names_both_errnos() -> None:
    def fails_with(number: int) -> None:
        raise OSError(number, "x")

    expect_errno(errno.EINVAL, lambda: fails_with(errno.EINVAL), "unmap")
    with pytest.raises(CheckError, match="unmap: failed with ENOENT, expected EINVAL"):
        expect_errno(errno.EINVAL, lambda: fails_with(errno.ENOENT), "unmap")
    with pytest.raises(CheckError, match="unmap: succeeded, expected EINVAL"):
        expect_errno(errno.EINVAL, lambda: None, "unmap")


def _helper() -> None:
    equal(1, 2, "inside a helper")


def test_describe_names_the_scripts_line_past_its_helpers() -> None:
    try:
        _helper()  # the line reported when _helper is named as a helper
    except CheckError as exc:
        caught = exc
    plain = describe(caught, __file__)
    past = describe(caught, __file__, {"_helper"})
    assert plain.startswith("inside a helper: got 0x1, expected 0x2 (line ")
    assert plain != past
    assert describe(ValueError("bad"), __file__) == "ValueError: bad"


def test_pages_spanned() -> None:
    assert pages_spanned(0, 4096) == 1
    assert pages_spanned(4095, 2) == 2
    assert pages_spanned(4096 - 0x10, 3 * 4096 + 123) == 5


def test_poll_for_returns_the_first_truthy_value_or_the_last() -> None:
    readings = iter([0, 0, 7, 9])
    assert poll_for(lambda: next(readings), timeout=5.0, interval=0.0) == 7
    assert poll_for(lambda: [], timeout=0.0) == []


def test_wait_until_names_what_never_came() -> None:
    calls = iter(range(10))
    wait_until(lambda: next(calls) == 2, "the third call", 5.0, 0.0)
    assert next(calls) == 3
    with pytest.raises(CheckError, match=r"timed out after 0 s waiting for the device in RUNNING"):
        wait_until(lambda: False, "the device in RUNNING", 0.0)
