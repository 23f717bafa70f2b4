# SPDX-License-Identifier: MIT
"""The package as users get it, for tests: a wheel and sdist built from this checkout the way a
release is (`python -m build`: the sdist first, the wheel from the sdist), and a wheelhouse of
the wheel's dependencies for a machine that installs offline (a guest, a lab host).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_S = 600.0


class PackagingError(RuntimeError):
    """A build or download failed; the message holds the tool's output."""


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path


def build_package(dest: Path, source: Path = CHECKOUT) -> Built:
    """`python -m build` of `source` into `dest`: the sdist, then the wheel built from it."""
    _run([sys.executable, "-m", "build", "--outdir", str(dest), str(source)], "python -m build")
    sdists, wheels = sorted(dest.glob("*.tar.gz")), sorted(dest.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise PackagingError(f"expected one sdist and one wheel in {dest}: {sdists + wheels}")
    return Built(sdists[0], wheels[0])


def manylinux_platforms(glibc: tuple[int, int]) -> list[str]:
    """pip's --platform values for an x86_64 glibc `glibc`: every manylinux tag it runs (pip
    before 23.1 does not expand a manylinux_2_X tag into the older ones by itself)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def download_wheelhouse(
    wheel: Path, dest: Path, *, python: tuple[int, int], glibc: tuple[int, int]
) -> list[Path]:
    """`wheel` and every dependency it needs as wheels for CPython `python` on x86_64 Linux
    with glibc `glibc`, whatever this interpreter is: what `pip install --no-index
    --find-links dest` installs from on that machine."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest)]
    command += ["--only-binary=:all:", "--implementation", "cp"]
    command += ["--python-version", f"{python[0]}.{python[1]}"]
    for platform in manylinux_platforms(glibc):
        command += ["--platform", platform]
    _run([*command, str(wheel)], "pip download")
    return sorted(dest.glob("*.whl"))


def _run(command: list[str], what: str) -> None:
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise PackagingError(f"{what} ran past {BUILD_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        raise PackagingError(
            f"{what} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
