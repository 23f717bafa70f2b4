# SPDX-License-Identifier: MIT
"""Shared fixtures of the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.debian import AptError, MirrorNotFoundError, PackageUnpackError, unpacked_package
from harness.kmod.checkpatch import Checkpatch, CheckpatchError, fetch_checkpatch
from harness.uapi.layout_check import HeaderSet
from harness.uapi.raw.versions import KernelVersion

HOST_VFIO_HEADER = Path("/usr/include/linux/vfio.h")
MULTIARCH_TRIPLET = "x86_64-linux-gnu"

# Header-set name -> Debian suite whose linux-libc-dev provides it.
DEBIAN_HEADER_SUITES = {"6.12": "trixie", "7.2": "sid"}


def _checked(header_set: HeaderSet) -> HeaderSet:
    """The headers must be of the series they are named for, or the test proves nothing."""
    series = KernelVersion.parse(header_set.name)
    version = header_set.version
    if (version.major, version.minor) != (series.major, series.minor):
        pytest.fail(f"{header_set.label}: expected Linux {header_set.name}.x", pytrace=False)
    return header_set


def host_header_set() -> HeaderSet:
    if not HOST_VFIO_HEADER.is_file():
        pytest.fail(
            f"{HOST_VFIO_HEADER} is missing: install the host's linux-libc-dev", pytrace=False
        )
    return _checked(HeaderSet.from_include_dirs("6.1", []))


def debian_header_set(name: str, suite: str) -> HeaderSet:
    """linux-libc-dev from `suite`. A failed fetch fails the tests: all three sets must run."""
    try:
        root = unpacked_package("linux-libc-dev", suite)
    except (AptError, MirrorNotFoundError, PackageUnpackError) as err:
        message = f"cannot get linux-libc-dev from Debian {suite} for header set {name}:\n{err}"
        raise pytest.fail.Exception(message, pytrace=False) from None
    include = root / "usr" / "include"
    if not (include / "linux" / "vfio.h").is_file():
        pytest.fail(f"linux-libc-dev from {suite} has no linux/vfio.h under {root}", pytrace=False)
    return _checked(HeaderSet.from_include_dirs(name, [include, include / MULTIARCH_TRIPLET]))


@pytest.fixture(scope="session")
def uapi_header_sets() -> dict[str, HeaderSet]:
    """UAPI header sets keyed by kernel series: the host's 6.1, trixie's 6.12, sid's 7.2."""
    sets = {"6.1": host_header_set()}
    for name, suite in DEBIAN_HEADER_SUITES.items():
        sets[name] = debian_header_set(name, suite)
    return sets


@pytest.fixture(scope="session")
def checkpatch_tool() -> Checkpatch:
    """checkpatch.pl from the host release's linux-source (cached). A failed fetch fails."""
    try:
        return fetch_checkpatch(progress=lambda _line: None)
    except (AptError, MirrorNotFoundError, PackageUnpackError, CheckpatchError) as err:
        raise pytest.fail.Exception(f"cannot get checkpatch.pl:\n{err}", pytrace=False) from None
