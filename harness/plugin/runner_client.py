# SPDX-License-Identifier: MIT
"""The host's end of the guest runner's protocol (harness.plugin.protocol) over any line pipe.

    client = RunnerClient.start(pipe, timeout=120)      # waits for {"ready": ...}
    outcome = client.run("tests/uapi/test_x.py::test_a", next_nodeid=None, timeout=600)
    outcome.reports, outcome.done                        # done is None if the runner died

The pipe is anything with send_line/read_line/stderr_tail (harness.ssh.stream's
StreamingCommand; the unit tests use a local subprocess).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.core.closing import Closing
from harness.plugin.protocol import (
    QUIT,
    ItemDone,
    ProtocolError,
    RunnerInfo,
    decode,
    encode,
    run_request,
)


class LinePipe(Protocol):
    @property
    def stderr_tail(self) -> tuple[str, ...]: ...
    def send_line(self, data: bytes) -> None: ...
    def read_line(self, timeout: float) -> bytes | None: ...
    def exit_status(self, timeout: float) -> int | None: ...
    def close(self) -> None: ...


GIVE_UP_POLL_S = 1.0


class GaveUpError(Exception):
    """give_up() said there is no point waiting for the item any longer."""


class RunnerStartError(RuntimeError):
    """The runner did not get to {"ready": ...}; the message has its stderr."""


@dataclass
class RunOutcome:
    reports: list[dict[str, Any]] = field(default_factory=list)  # serialized, in order
    done: ItemDone | None = None
    problem: str | None = None  # why there is no `done`: the runner died or timed out
    timed_out: bool = False


class RunnerClient(Closing):
    def __init__(self, pipe: LinePipe, info: RunnerInfo) -> None:
        self.pipe = pipe
        self.info = info
        self.alive = True
        self.guest_rootdir: str | None = None  # where the suite's rootdir is, in the guest

    @classmethod
    def start(cls, pipe: LinePipe, timeout: float) -> RunnerClient:
        """Wait for the runner's ready message (collection can take a while in a slow guest)."""
        try:
            line = pipe.read_line(timeout)
        except TimeoutError:
            pipe.close()
            raise RunnerStartError(
                f"the guest runner did not finish collecting within {timeout:.0f} s" + _stderr(pipe)
            ) from None
        if line is None:
            status = pipe.exit_status(5.0)
            pipe.close()
            raise RunnerStartError(
                f"the guest runner exited ({status}) before collecting{_stderr(pipe)}"
            )
        message = decode(line)
        if "ready" not in message:
            pipe.close()
            raise RunnerStartError(f"the guest runner said {message!r} instead of ready")
        return cls(pipe, RunnerInfo.from_message(message["ready"]))

    def run(
        self,
        nodeid: str,
        next_nodeid: str | None,
        timeout: float,
        *,
        give_up: Callable[[], str | None] | None = None,
    ) -> RunOutcome:
        """Run one item; a dead or silent runner gives an outcome without `done`.

        `give_up()`, asked about once a second while waiting, returns why waiting longer is
        pointless (say, the kernel oopsed and the test's process hangs), or None.
        """
        outcome = RunOutcome()
        deadline = time.monotonic() + timeout
        try:
            self.pipe.send_line(encode(run_request(nodeid, next_nodeid)))
            while True:
                line = self._next_line(deadline, give_up)
                if line is None:
                    self.alive = False
                    outcome.problem = "the guest runner's connection ended" + _stderr(self.pipe)
                    return outcome
                message = decode(line)
                if "report" in message:
                    outcome.reports.append(message["report"])
                elif "done" in message:
                    outcome.done = ItemDone.from_message(message["done"])
                    return outcome
                else:
                    raise ProtocolError(f"unexpected message from the guest runner: {message!r}")
        except GaveUpError as err:
            self.alive = False
            outcome.timed_out = True  # the VM cannot be trusted with the next test either
            outcome.problem = f"stopped waiting for the test: {err}" + _stderr(self.pipe)
            return outcome
        except TimeoutError:
            self.alive = False
            outcome.timed_out = True
            outcome.problem = f"the test did not finish within {timeout:.0f} s" + _stderr(self.pipe)
            return outcome
        except ProtocolError as err:  # a runner out of step cannot be trusted with more items
            self.alive = False
            outcome.problem = f"the guest runner broke the protocol: {err}" + _stderr(self.pipe)
            return outcome
        except (OSError, RuntimeError) as err:  # SshError: the connection broke while sending
            self.alive = False
            outcome.problem = f"the guest runner's connection broke: {err}" + _stderr(self.pipe)
            return outcome

    def _next_line(self, deadline: float, give_up: Callable[[], str | None] | None) -> bytes | None:
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            try:
                return self.pipe.read_line(min(remaining, GIVE_UP_POLL_S) if give_up else remaining)
            except TimeoutError:
                if give_up is None or time.monotonic() >= deadline:
                    raise
            reason = give_up()
            if reason is not None:
                raise GaveUpError(reason)

    def quit(self, timeout: float) -> int | None:
        """Ask the runner to tear its session down and wait for it to exit."""
        if not self.alive:
            return None
        self.alive = False
        try:
            self.pipe.send_line(encode(QUIT))
        except (OSError, RuntimeError):
            return None
        return self.pipe.exit_status(timeout)

    def close(self) -> None:
        self.alive = False
        self.pipe.close()


def _stderr(pipe: LinePipe, lines: int = 30) -> str:
    tail = pipe.stderr_tail[-lines:]
    if not tail:
        return ""
    return "; its last stderr lines:\n" + "\n".join(f"  | {line}" for line in tail)
