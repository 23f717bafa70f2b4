# SPDX-License-Identifier: MIT
"""Unpacking the harness's own tarballs in tests, on every Python we support."""

from __future__ import annotations

import tarfile
from pathlib import Path


def extract_all(archive: tarfile.TarFile, destination: Path) -> None:
    """tarfile's "data" filter where the Python has it (3.11.4 and later; Debian 12 has
    3.11.2, where the tarballs, being our own, are extracted as they are)."""
    if hasattr(tarfile, "data_filter"):
        archive.extractall(destination, filter="data")
    else:
        archive.extractall(destination)
