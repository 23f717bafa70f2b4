# SPDX-License-Identifier: MIT
"""The fuzzer's guest process: runs the programs the host sends, with KCOV around every op.

    HARNESS_MDEV_TYPE=mtty-2 python3 -m harness.fuzz.guest

says {"ready": {"profile": ..., "kcov": true, "kernel": "6.12.x"}} on stdout, then answers one
JSON line per request on stdin until EOF:

    {"run": [op, ...]}  ->  {"done": {"results": [...], "new_pcs": [...], "pcs": N,
                                      "log": [kernel log lines], "seconds": S}}
    {"leaks": true}     ->  {"leaks": [kmemleak's report lines]}   (after a scan; then cleared)

`new_pcs` are the normalised PCs (harness.fuzz.pcs) this process had not seen before; the
host keeps the campaign's total. The device is the type HARNESS_MDEV_TYPE/_PARENT names (our
reference device's small type by default), created here and removed at the end. Standard
library only, like the rest of harness.fuzz.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from typing import IO, Any

from harness.core.debug_checks import Kmemleak
from harness.core.kmsg import KmsgReader
from harness.fuzz.executor import Executor, chosen_type
from harness.fuzz.kcov import Kcov, KcovError
from harness.fuzz.pcs import PcMap


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


def serve(reader: IO[bytes], writer: IO[bytes]) -> int:
    def send(message: dict[str, Any]) -> None:
        writer.write(json.dumps(message).encode() + b"\n")
        writer.flush()

    mdev_type = chosen_type()
    log = KmsgReader.open()
    leaks = Kmemleak.find()
    with contextlib.ExitStack() as stack:
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
                }
            }
        )
        for line in reader:
            if not line.strip():
                continue
            request = json.loads(line)
            if "run" in request:
                started = time.monotonic()
                results = executor.run(request["run"], each=tracer.op)
                new, count = tracer.take()
                send(
                    {
                        "done": {
                            "results": results,
                            "new_pcs": new,
                            "pcs": count,
                            "log": log.drain(),
                            "seconds": round(time.monotonic() - started, 4),
                        }
                    }
                )
            elif "leaks" in request:
                send({"leaks": leaks.scan() if leaks is not None else []})
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
