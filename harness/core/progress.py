# SPDX-License-Identifier: MIT
"""Progress lines of long work (image and kernel builds, boots): a callable that takes one line.

Builders take `progress: Progress = stderr_progress`; libraries that should stay quiet unless
asked take `quiet`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def quiet(_line: str) -> None:
    """Says nothing."""


@contextlib.contextmanager
def phase(progress: Progress, label: str, name: str) -> Iterator[None]:
    """Report a step as 'bookworm: mmdebstrap ...', then 'bookworm: mmdebstrap ... 31.2 s'."""
    progress(f"{label}: {name} ...")
    start = time.monotonic()
    yield
    progress(f"{label}: {name} ... {time.monotonic() - start:.1f} s")
