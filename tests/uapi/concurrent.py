# SPDX-License-Identifier: MIT
"""Threads for tests that race the device: a step repeated until the block ends, the
reference device's DMA engine copying over and over, a sysfs removal that may block, and a
watch on a slow call that tells where in the kernel it waits."""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Self

from harness.mdev import MdevDevice
from harness.refdev import RefDevice
from harness.refdev import registers as r

# A copy that finds its range unmapped fails like a device hitting an IOMMU fault: with the
# backend's answer for an IOVA it does not map (type1 EINVAL, iommufd ENOENT, vfio_dma_rw
# EFAULT), or EFAULT when the device was told of the unmap first.
UNMAPPED = {"EINVAL", "ENOENT", "EFAULT"}
# A kept copy also fails once the device keeps its most pages pinned (1024) until an unmap.
KEPT_FULL = "ENOSPC"
# Not done and no errno: a reset cleared the registers between the doorbell and their reads.
CLEARED = "cleared"


class Repeat:
    """Runs `step` over and over in a thread of its own until the block ends; its error, if
    any, is raised in the test's thread."""

    def __init__(self, step: Callable[[], None], name: str) -> None:
        self.rounds = 0
        self._step = step
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
                self.rounds += 1
        except BaseException as exc:
            self._error = exc

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), f"{self._thread.name}: a call has not returned in 30 s"
        if self._error is not None:
            raise self._error


class DmaLoop(Repeat):
    """Rings the doorbell of one programmed copy, over and over, and counts the outcomes."""

    def __init__(self, ref: RefDevice, command: int, *, keeps_pins: bool) -> None:
        super().__init__(self._copy_once, "dma-loop")
        self.ref = ref
        self.command = command
        self.keeps_pins = keeps_pins
        self.outcomes: Counter[str] = Counter()  # "done", CLEARED, or the failure's errno name

    def _copy_once(self) -> None:
        self.ref.write32(r.REG_DMA_CMD, self.command)
        status = self.ref.read32(r.REG_DMA_STATUS)
        error = self.ref.read32(r.REG_DMA_ERROR)
        if status & r.DMA_STATUS_DONE:
            outcome = "done"
        elif error == 0:  # no status, or an error status whose errno a reset cleared
            outcome = CLEARED
        else:
            outcome = errno.errorcode.get(error, str(error))
        self.outcomes[outcome] += 1

    def check_raced(self, rounds: int, what: str, *, also: frozenset[str] = frozenset()) -> None:
        """The copies ran while the other side went round, and failed only as `what` may
        make them (an unmapped range), or as `also` allows."""
        allowed = UNMAPPED | also | ({KEPT_FULL} if self.keeps_pins else set())
        unexpected = {
            name: n for name, n in self.outcomes.items() if name != "done" and name not in allowed
        }
        assert not unexpected, f"copies failed with {unexpected} while racing {what}"
        assert self.outcomes["done"] > 0, (
            f"no copy completed while racing {what}: {dict(self.outcomes)}"
        )
        assert rounds > 0, f"{what} never went round"


class Removal:
    """`device.remove()` in a thread of its own: the kernel holds it until the device is
    closed (asking for it back through REQ meanwhile)."""

    def __init__(self, device: MdevDevice) -> None:
        self.device = device
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="remove", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.device.remove()
        except BaseException as exc:
            self._error = exc
        finally:
            self._done.set()

    def finished(self, within: float) -> bool:
        """Whether the removal returned within `within` seconds; its error, if any, raised."""
        done = self._done.wait(within)
        if self._error is not None:
            raise self._error
        return done


def kernel_stack(native_id: int) -> tuple[str, ...]:
    """The kernel functions a thread of this process is in, innermost first; empty when the
    kernel does not show it (no CONFIG_STACKTRACE) or the thread is gone."""
    try:
        text = Path(f"/proc/self/task/{native_id}/stack").read_text()
    except OSError:
        return ()
    # "[<0>] iommufd_object_dec_wait_shortterm+0x1cb/0x270"
    frames = (line.rpartition("] ")[2].partition("+")[0] for line in text.splitlines())
    return tuple(frame for frame in frames if frame)


class SlowCall:
    """Times the block's blocking call in this thread. Still in it after `probe` seconds,
    the call's kernel stack is kept in `stack`, to tell a known kernel bug from a driver's."""

    def __init__(self, probe: float) -> None:
        self.seconds = 0.0
        self.stack: tuple[str, ...] = ()
        self._probe = probe
        self._done = threading.Event()
        self._caller = threading.get_native_id()
        self._watch = threading.Thread(target=self._sample, name="stack-probe", daemon=True)
        self._start = 0.0

    def _sample(self) -> None:
        if not self._done.wait(self._probe):
            self.stack = kernel_stack(self._caller)

    def __enter__(self) -> Self:
        self._start = time.monotonic()
        self._watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start
        self._done.set()
        self._watch.join()

    def waited_in(self) -> str:
        return " < ".join(self.stack) or "(no kernel stack)"
