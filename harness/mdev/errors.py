# SPDX-License-Identifier: MIT
"""Errors of the mdev layer: OSError subclasses that keep the kernel's errno.

The kernel answers a sysfs write with an errno (EINVAL for a malformed UUID, EEXIST for a
duplicate, EUSERS when no instance is left). Tests assert on `err.errno`; a person reading a
failure wants to know which operation, on which path, failed and how: the message says all three.
"""

from __future__ import annotations

import errno as errno_mod
import os
from collections.abc import Iterable
from typing import Any


def errno_name(err: int) -> str:
    """'EINVAL' for 22; a number the C library does not name stays a number."""
    return errno_mod.errorcode.get(err, f"errno {err}")


class MdevError(OSError):
    """An mdev sysfs operation failed.

    `errno` is the kernel's, `operation` says what was being done (e.g. "create mdev <uuid>"),
    `filename` is the sysfs path that answered.
    """

    def __init__(
        self, operation: str, path: str | os.PathLike[str], err: int, detail: str = ""
    ) -> None:
        message = f"{operation}: {os.fspath(path)}: {errno_name(err)} ({os.strerror(err)})"
        if detail:
            message = f"{message}; {detail}"
        super().__init__(err, message, os.fspath(path))
        self.operation = operation
        self._reduce_args: tuple[Any, ...] = (operation, os.fspath(path), err, detail)

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # OSError pickles as (errno, strerror); keep our own signature so the error survives
        # being shipped between processes (pytest-xdist workers, the in-guest runner).
        return (type(self), self._reduce_args)


class MdevNotFoundError(MdevError, FileNotFoundError):
    """A parent, type or device that does not exist; the message lists the ones that do."""

    def __init__(
        self, what: str, name: str, path: str | os.PathLike[str], known: Iterable[str]
    ) -> None:
        known_list = sorted(known)
        listing = ", ".join(known_list) if known_list else "none"
        super().__init__(f"find {what} {name!r}", path, errno_mod.ENOENT, f"known: {listing}")
        self.what = what
        self.name = name
        self.known = tuple(known_list)
        self._reduce_args = (what, name, os.fspath(path), tuple(known_list))


class MdevAmbiguousTypeError(MdevError):
    """A type id offered by several parents (two identical GPUs): the caller must name one."""

    def __init__(self, type_id: str, path: str | os.PathLike[str], parents: Iterable[str]) -> None:
        parent_list = sorted(parents)
        super().__init__(
            f"find mdev type {type_id!r}",
            path,
            errno_mod.ENOTUNIQ,
            f"offered by parents {', '.join(parent_list)}; pass parent=",
        )
        self.type_id = type_id
        self.parents = tuple(parent_list)
        self._reduce_args = (type_id, os.fspath(path), tuple(parent_list))
