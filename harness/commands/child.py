# SPDX-License-Identifier: MIT
"""Running the long child of a command (pytest under `vfio-harness run`) to its own end.

A Ctrl-C in the terminal reaches the whole foreground process group: the child stops its
tests, closes its VMs and writes its reports by itself, and that takes as long as it takes on
a loaded machine. subprocess.run would instead SIGKILL the child 0.25 s after the
KeyboardInterrupt, leaving the reports unwritten and the VMs to their watchdogs. So the parent
waits for the child whatever arrives, and passes on what the terminal does not send the child
itself: SIGTERM and SIGHUP (a CI job's timeout, a closed session).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def run_to_end(command: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> int:
    """The child's exit status (a signal that killed it: 128 + its number, as a shell says)."""
    child = subprocess.Popen(list(command), cwd=cwd, env=dict(env))
    with _passing_signals_to(child):
        while True:
            try:
                status = child.wait()
                break
            except KeyboardInterrupt:
                print(
                    "vfio-harness: interrupted: waiting for pytest to stop its VMs and write "
                    "its reports (Ctrl-C again makes pytest stop at once)",
                    file=sys.stderr,
                    flush=True,
                )
    return 128 - status if status < 0 else status


@contextlib.contextmanager
def _passing_signals_to(child: subprocess.Popen[bytes]) -> Iterator[None]:
    def forward(signo: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signo)

    previous = {signo: signal.signal(signo, forward) for signo in FORWARDED}
    try:
        yield
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)
