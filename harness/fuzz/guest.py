# SPDX-License-Identifier: MIT
"""The fuzzer's guest process: runs the programs the host sends, with KCOV around every op.

    HARNESS_MDEV_TYPE=mtty-2 python3 -m harness.fuzz.guest

says {"ready": {"profile": ..., "kcov": true, "kernel": "6.12.x"}} on stdout, then answers one
JSON line per request on stdin until EOF:

    {"run": [op, ...]}  ->  {"done": {"results": [...], "new_pcs": [...], "pcs": N,
                                      "logs": [[op index, [kernel log lines]], ...],
                                      "seconds": S, "error": null}}
    {"run": [...], "fresh": true}   the same on a new device of the type
    {"leaks": true}     ->  {"leaks": [kmemleak's report lines]}   (a scan; then forgotten)
    {"leaks": true, "settle": S}   two scans S seconds apart: what the last program leaked

`new_pcs` are the normalised PCs (harness.fuzz.pcs) this process had not seen before; the
host keeps the campaign's total. The device is the type HARNESS_MDEV_TYPE/_PARENT names (our
reference device's small type by default), created here and removed at the end; a type that
is not there is {"error": "..."} instead of ready. Standard
library only, like the rest of harness.fuzz.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
from typing import IO, Any

from harness.core.debug_checks import Kmemleak
from harness.core.kmsg import KmsgReader
from harness.fuzz.executor import Executor, chosen_type
from harness.fuzz.kcov import Kcov, KcovError
from harness.fuzz.pcs import PcMap
from harness.mdev.choice import DeviceChoiceError

AT_FILE = "/dev/shm/vfio-harness-fuzz-at"  # the index of the op running now


class Tracer:
    """KCOV around each op of a program; the normalised PCs the program ran."""

    def __init__(self, kcov: Kcov | None, pcs: PcMap) -> None:
        self.kcov = kcov
        self.pcs = pcs
        self.seen: set[int] = set()
        self.program: set[int] = set()

    @contextlib.contextmanager
    def op(self) -> Any:
        if self.kcov is None:
            yield
            return
        with self.kcov.trace() as raw:
            yield
        normalise = self.pcs.normalise
        self.program.update(normalise(pc) for pc in raw)

    def take(self) -> tuple[list[int], int]:
        """(the PCs new to this process, how many the program ran); starts the next program."""
        ran, self.program = self.program, set()
        new = ran - self.seen
        self.seen |= new
        return sorted(new), len(ran)


class Hooks:
    """Around each op of a program: which op runs, in AT_FILE (a crash is then pinned on it;
    a file in tmpfs costs a syscall, a message to the host a trip through sshd), KCOV, and the
    kernel log lines the op caused."""

    def __init__(self, at_fd: int, tracer: Tracer, log: KmsgReader) -> None:
        self.at_fd = at_fd
        self.tracer = tracer
        self.log = log
        self.index = 0
        self.logs: list[list[Any]] = []  # [op index, lines]; len(program): the clean-up's

    @contextlib.contextmanager
    def op(self) -> Iterator[None]:
        index, self.index = self.index, self.index + 1
        os.pwrite(self.at_fd, b"%-10d\n" % index, 0)
        try:
            with self.tracer.op():
                yield
        finally:
            self.take_log(index)

    def take_log(self, index: int) -> None:
        lines = self.log.drain()
        if lines:
            self.logs.append([index, lines])


def serve(reader: IO[bytes], writer: IO[bytes]) -> int:
    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        writer.flush()

    try:
        mdev_type = chosen_type()
    except DeviceChoiceError as err:
        send({"error": str(err)})
        return 2
    log = KmsgReader.open()
    leaks = Kmemleak.find()
    at_fd = os.open(AT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, at_fd)
        try:
            kcov: Kcov | None = stack.enter_context(Kcov())
        except KcovError:
            kcov = None
        executor = stack.enter_context(Executor(mdev_type))
        profile = executor.profile()
        tracer = Tracer(kcov, PcMap.read())  # after the device exists: its modules are loaded
        if leaks is not None:
            leaks.clear()
        log.drain()
        send(
            {
                "ready": {
                    "profile": profile,
                    "kcov": kcov is not None,
                    "kmemleak": leaks is not None,
                    "kernel": platform.release(),
                    "type": mdev_type.type_id,
                    "pid": os.getpid(),
                }
            }
        )
        for line in reader:
            if not line.strip():
                continue
            request = json.loads(line)
            if "run" in request:
                started = time.monotonic()
                hooks = Hooks(at_fd, tracer, log)
                error = None
                try:
                    if request.get("fresh"):
                        executor.renew()
                    results = executor.run(request["run"], each=hooks.op)
                except Exception as err:  # the executor's own bug: said, and the loop goes on
                    results = []
                    error = "".join(traceback.format_exception_only(err)).strip()
                hooks.take_log(len(request["run"]))
                new, count = tracer.take()
                send(
                    {
                        "done": {
                            "results": results,
                            "new_pcs": new,
                            "pcs": count,
                            "logs": hooks.logs,
                            "seconds": round(time.monotonic() - started, 4),
                            "error": error,
                        }
                    }
                )
            elif "leaks" in request:
                age = request.get("settle")
                report = (
                    [] if leaks is None else leaks.settle_and_scan(age) if age else leaks.scan()
                )
                send({"leaks": report})
            else:
                send({"error": f"unknown request {sorted(request)}"})
    return 0


def main() -> int:
    # The protocol owns stdout: anything printed elsewhere goes to stderr.
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return serve(reader, writer)


if __name__ == "__main__":
    sys.exit(main())
