# SPDX-License-Identifier: MIT
"""Removing an mdev in the background: while a VFIO user holds the device, the write to its
`remove` attribute blocks in the vfio core (which signals the device's REQ meanwhile) until
the user lets go, so the checks watch it from the side.

    with Removal(uuid) as removal:     # started
        removal.finished()             # False while QEMU holds the device
        removal.wait(30) and removal.outcome() == "removed"
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from harness.mdev import MdevSysfs


class Removal:
    def __init__(self, uuid: str) -> None:
        self.uuid = uuid
        self._error: BaseException | None = None
        self._started = time.monotonic()
        self._ended: float | None = None
        # A daemon: a removal that never returns must not keep the checks' process alive.
        self._thread = threading.Thread(target=self._remove, name=f"remove-{uuid}", daemon=True)
        self._thread.start()

    def _remove(self) -> None:
        try:
            MdevSysfs().device(self.uuid).remove()
        except BaseException as exc:  # reported through outcome()
            self._error = exc
        finally:
            self._ended = time.monotonic()

    def finished(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return self.finished()

    def seconds(self) -> float:
        """How long the write blocked (so far)."""
        return round((self._ended or time.monotonic()) - self._started, 2)

    def outcome(self) -> str:
        if not self.finished():
            return f"still blocked after {self.seconds()} s"
        if self._error is not None:
            return f"failed: {type(self._error).__name__}: {self._error}"
        return "removed"

    def __enter__(self) -> Removal:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # The caller destroys the holder on every path; give the write its chance to finish.
        self.wait(5.0)
