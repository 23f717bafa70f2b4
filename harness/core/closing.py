# SPDX-License-Identifier: MIT
"""A mixin that makes anything with close() a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Closing:
    """`with obj:` closes obj on the way out, error or not; subclasses define close()."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
