# SPDX-License-Identifier: MIT
"""A scripted stand-in for the kernel side of ioctls, for testing the wrappers' marshalling.

Each handler receives the ctypes argument exactly as the wrapper passed it (a struct, a buffer
or an int) and mutates it the way the kernel's copy_to_user would.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from harness.uapi.errors import IoctlError
from harness.uapi.syscall import IoctlArg

Handler = Callable[[Any], int]
T = TypeVar("T")


class KernelErrnoError(Exception):
    """Raised by a handler to make the ioctl fail with this errno."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = err


@dataclass
class Call:
    name: str
    request: int
    sent: bytes | int | None  # the argument's bytes as they were before the "kernel" ran

    def sent_bytes(self) -> bytes:
        assert isinstance(self.sent, bytes), f"{self.name} was passed {self.sent!r}, not a buffer"
        return self.sent


@dataclass
class FakeKernel:
    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __call__(self, request: int, name: str, arg: IoctlArg) -> int:
        sent: bytes | int | None
        if arg is None or isinstance(arg, int):
            sent = arg
        else:
            sent = ctypes.string_at(ctypes.addressof(arg), ctypes.sizeof(arg))
        self.calls.append(Call(name, request, sent))
        handler = self.handlers.get(name)
        if handler is None:
            raise IoctlError(name, errno.ENOTTY)
        try:
            return handler(arg)
        except KernelErrnoError as failure:
            raise IoctlError(name, failure.err) from None


def scripted(cls: type[T], kernel: FakeKernel) -> T:
    """An instance of the wrapper `cls` whose ioctls go to `kernel` (its fd is /dev/null)."""
    fake_cls = type(
        f"Scripted{cls.__name__}",
        (cls,),
        {
            "ioctl": lambda self, request, name, arg=None: kernel(request, name, arg),
        },
    )
    return fake_cls(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))  # type: ignore[no-any-return]


def fail_with(err: int) -> Handler:
    def handler(_arg: Any) -> int:
        raise KernelErrnoError(err)

    return handler
