# SPDX-License-Identifier: MIT
"""Interrupts: IRQ info, VFIO_DEVICE_SET_IRQS payloads, and eventfds to receive them."""

from __future__ import annotations

import os
import select
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.uapi.fdobject import FdObject
from harness.uapi.raw import vfio as v


@dataclass(frozen=True)
class IrqInfo:
    index: int
    flags: int
    count: int

    @property
    def eventfd(self) -> bool:
        return bool(self.flags & v.VFIO_IRQ_INFO_EVENTFD)

    @property
    def maskable(self) -> bool:
        return bool(self.flags & v.VFIO_IRQ_INFO_MASKABLE)

    @property
    def automasked(self) -> bool:
        return bool(self.flags & v.VFIO_IRQ_INFO_AUTOMASKED)

    @property
    def noresize(self) -> bool:
        return bool(self.flags & v.VFIO_IRQ_INFO_NORESIZE)


def eventfd_payload(fds: Sequence[int]) -> bytes:
    """DATA_EVENTFD: one s32 per vector; -1 de-assigns that vector."""
    return struct.pack(f"<{len(fds)}i", *fds)


def bool_payload(values: Sequence[bool]) -> bytes:
    """DATA_BOOL: one u8 per vector."""
    return bytes(1 if value else 0 for value in values)


class EventFd(FdObject):
    """A non-blocking eventfd that counts interrupts the kernel signals into it."""

    def __init__(self) -> None:
        super().__init__(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))

    def wait(self, timeout: float) -> int:
        """Wait up to `timeout` seconds; return the count consumed (0 if none arrived)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            return 0
        return self.consume()

    def consume(self) -> int:
        """Read and reset the counter without waiting; 0 if nothing is pending."""
        try:
            return os.eventfd_read(self.fd)
        except BlockingIOError:
            return 0


class _SetsIrqs(Protocol):
    def set_irqs(
        self,
        index: int,
        start: int,
        count: int,
        flags: int,
        data: bytes = b"",
        argsz: int | None = None,
    ) -> None: ...


class IrqIndex:
    """The well-formed SET_IRQS calls for one IRQ index, named for what they do."""

    def __init__(self, device: _SetsIrqs, info: IrqInfo) -> None:
        self.device = device
        self.info = info

    def _set(self, flags: int, start: int, count: int, data: bytes = b"") -> None:
        self.device.set_irqs(self.info.index, start, count, flags, data)

    def attach_eventfds(self, fds: Sequence[int], start: int = 0) -> None:
        self._set(
            v.VFIO_IRQ_SET_DATA_EVENTFD | v.VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            len(fds),
            eventfd_payload(fds),
        )

    def disable(self) -> None:
        """DATA_NONE + TRIGGER with count 0: tear down every vector of the index."""
        self._set(v.VFIO_IRQ_SET_DATA_NONE | v.VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0)

    def fire(self, start: int = 0, count: int = 1) -> None:
        """Loopback: ask the driver to signal the vectors as if the device had."""
        self._set(v.VFIO_IRQ_SET_DATA_NONE | v.VFIO_IRQ_SET_ACTION_TRIGGER, start, count)

    def fire_bool(self, values: Sequence[bool], start: int = 0) -> None:
        self._set(
            v.VFIO_IRQ_SET_DATA_BOOL | v.VFIO_IRQ_SET_ACTION_TRIGGER,
            start,
            len(values),
            bool_payload(values),
        )

    def mask(self, start: int = 0, count: int = 1) -> None:
        self._set(v.VFIO_IRQ_SET_DATA_NONE | v.VFIO_IRQ_SET_ACTION_MASK, start, count)

    def unmask(self, start: int = 0, count: int = 1) -> None:
        self._set(v.VFIO_IRQ_SET_DATA_NONE | v.VFIO_IRQ_SET_ACTION_UNMASK, start, count)

    def unmask_with_eventfd(self, fd: int, start: int = 0) -> None:
        """An eventfd that unmasks the vector when signalled (how KVM's irqfd resampler works)."""
        self._set(
            v.VFIO_IRQ_SET_DATA_EVENTFD | v.VFIO_IRQ_SET_ACTION_UNMASK,
            start,
            1,
            eventfd_payload([fd]),
        )
