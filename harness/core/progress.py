# SPDX-License-Identifier: MIT
"""Progress lines of long work (image and kernel builds, boots): a callable that takes one line.

Builders take `progress: Progress = stderr_progress`; libraries that should stay quiet unless
asked take `quiet`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def quiet(_line: str) -> None:
    """Says nothing."""
