# SPDX-License-Identifier: MIT
"""Which collected items are guest tests, their options, and their names inside the guest.

An item is a guest test when its file is under a guest suite directory (`--guest-suite DIR`,
repeatable; default the `guest_suites` ini value, `tests/uapi`) or it is marked `guest`. With
`--target vm` (the default) each guest test is parametrized by `--kernel` like the VM
fixtures' tests; its id inside the guest is its host id without that kernel part, because
the guest collects the same files unparametrized.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from harness.kernel.choice import KernelChoice
from harness.plugin.known_failures import KnownFailures, KnownFailuresError
from harness.plugin.known_failures import load as load_known
from harness.plugin.known_failures import resolve as resolve_known

DEFAULT_GUEST_SUITES = "tests/uapi"
KERNEL_PARAM = "vm_kernel"
GUEST_MARKER = "guest"
# The suite's contract (see harness/plugin/__init__.py): option -> environment variable.
MDEV_ENV = {
    "mdev_type": "HARNESS_MDEV_TYPE",
    "mdev_parent": "HARNESS_MDEV_PARENT",
    "mdev_uuid": "HARNESS_MDEV_UUID",
    "expect": "HARNESS_EXPECT",
}
TARGET_ENV = "HARNESS_TARGET"
# Passed on to the guest as they are: the suite's cases that kernel bugs hang or crash run,
# and the races run this many seconds each (the stress campaign) instead of 3.
KERNEL_BUGS_ENV = "HARNESS_KERNEL_BUGS"
STRESS_SECONDS_ENV = "HARNESS_STRESS_SECONDS"
PASSED_ON_ENV = (KERNEL_BUGS_ENV, STRESS_SECONDS_ENV)
_SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
_FIXED_MTIME = 1_700_000_000


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("vfio-harness")
    group.addoption(
        "--target",
        choices=("vm", "local"),
        default="vm",
        help="where guest tests run: in VMs (default), or in this process on a host that has "
        "the device (bare metal)",
    )
    group.addoption(
        "--guest-suite",
        action="append",
        default=[],
        metavar="DIR",
        help=f"a directory of guest tests (repeatable; default ini guest_suites or "
        f"{DEFAULT_GUEST_SUITES}; write --guest-suite=DIR)",
    )
    group.addoption("--mdev-type", default=None, help="mdev type the suite creates its device of")
    group.addoption("--mdev-parent", default=None, help="parent device of that type")
    group.addoption("--mdev-uuid", default=None, help="an existing mdev device to test instead")
    group.addoption(
        "--expect",
        default=None,
        metavar="CAPS",
        help="capabilities the driver must offer (harness.uapi.profile.CAPABILITIES, comma-"
        "separated): a test that needs a missing one fails instead of skipping",
    )
    group.addoption(
        "--vendor-module",
        default=None,
        metavar="PATH.ko",
        help="load this vendor driver in VMs instead of building and loading ours (kmod/); "
        "write --vendor-module=PATH: pytest takes a separate path word for a test path",
    )
    group.addoption(
        "--vendor-src",
        default=None,
        metavar="DIR",
        help="build this vendor driver's source (like kmod/) for each guest kernel and load it "
        "(write --vendor-src=DIR)",
    )
    group.addoption(
        "--vendor-sample",
        default=None,
        metavar="NAME",
        help="build the kernel's sample driver NAME (mtty, mdpy, mbochs) from the linux-source "
        "of each kernel's Debian release and load it (write --vendor-sample=NAME)",
    )
    group.addoption(
        "--known-failures",
        default=None,
        metavar="FILE",
        help="a driver's known bugs (TOML, harness.plugin.known_failures): the tests they fail "
        "are expected failures; a name is tests/uapi/known/NAME.toml (e.g. mtty)",
    )
    group.addoption(
        "--module-faults",
        type=int,
        default=0,
        metavar="BITS",
        help="TEST THE SUITE: load the fault-injection build of our module (kmod/faults.h) "
        "with fault=BITS: 1 keeps pins on unmap, 2 overruns device memory, 4 WARNs on reset",
    )
    group.addoption(
        "--coverage-dir",
        default=None,
        metavar="DIR",
        help="copy each VM's gcov counters into DIR before it is closed (kernels with "
        "CONFIG_GCOV_KERNEL: the debug kernel); `vfio-harness run --coverage` reports them",
    )
    group.addoption(
        "--guest-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds one guest test may take (stretched for TCG) before its VM is killed",
    )
    parser.addini(
        "guest_suites", "directories of guest tests", type="args", default=[DEFAULT_GUEST_SUITES]
    )


def mdev_environment(config: pytest.Config) -> dict[str, str]:
    """HARNESS_MDEV_* and HARNESS_EXPECT for the options given, HARNESS_TARGET, and
    HARNESS_KERNEL_BUGS and HARNESS_STRESS_SECONDS if set."""
    env = {TARGET_ENV: str(config.getoption("--target"))}
    for option, name in MDEV_ENV.items():
        value = config.getoption(option)
        if value:
            env[name] = str(value)
    env.update({name: os.environ[name] for name in PASSED_ON_ENV if os.environ.get(name)})
    return env


def mdev_environment_of(values: object) -> dict[str, str]:
    """The same from an object with the options as attributes (vfio-harness run's args)."""
    return {name: str(getattr(values, o)) for o, name in MDEV_ENV.items() if getattr(values, o)}


def suite_roots(config: pytest.Config) -> list[Path]:
    given = config.getoption("--guest-suite") or config.getini("guest_suites")
    base = Path.cwd() if config.getoption("--guest-suite") else config.rootpath
    return [(base / str(path)).resolve() for path in given]


def suite_of(node: pytest.Item | pytest.Function, roots: list[Path]) -> Path | None:
    """The suite directory `node` belongs to, or None for an ordinary (host) test."""
    path = Path(node.path).resolve()
    for root in roots:
        if path.is_relative_to(root):
            return root
    if node.get_closest_marker(GUEST_MARKER) is not None:
        return path.parent
    return None


def kernel_of(item: pytest.Item) -> KernelChoice | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    choice = callspec.params.get(KERNEL_PARAM)
    return choice if isinstance(choice, KernelChoice) else None


def guest_nodeid(item: pytest.Item) -> str:
    """The item's nodeid in the guest's collection: without the kernel parametrization."""
    choice = kernel_of(item)
    if choice is None:
        return item.nodeid
    nodeid, kid = item.nodeid, choice.id
    if nodeid.endswith(f"[{kid}]"):
        return nodeid[: -len(kid) - 2]
    if nodeid.endswith(f"-{kid}]"):
        return nodeid[: -len(kid) - 2] + "]"
    return nodeid  # cannot happen while the kernel is parametrized last (trylast)


def suite_files(suite: Path, rootdir: Path) -> Iterator[tuple[Path, str]]:
    """(file, name relative to rootdir) for the suite and the package __init__s above it."""
    relative = suite.relative_to(rootdir)
    for depth in range(len(relative.parts)):
        init = rootdir.joinpath(*relative.parts[:depth], "__init__.py")
        if init.is_file():
            yield init, init.relative_to(rootdir).as_posix()
    for directory, subdirs, files in os.walk(suite):
        subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_PARTS)
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                path = Path(directory) / name
                yield path, path.relative_to(rootdir).as_posix()


def suite_tarball(suite: Path, rootdir: Path, markers: list[str]) -> bytes:
    """The suite as the guest gets it: paths as under the host's rootdir, plus a pytest.ini."""
    if not suite.is_relative_to(rootdir):
        raise ValueError(
            f"guest suite {suite} is outside pytest's rootdir {rootdir}: run pytest from a "
            "directory above it (or pass --rootdir)"
        )
    ini = "[pytest]\nmarkers =\n" + "".join(f"    {line}\n" for line in markers)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        entries: list[tuple[str, bytes]] = [("pytest.ini", ini.encode())]
        entries += [(name, path.read_bytes()) for path, name in suite_files(suite, rootdir)]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, _FIXED_MTIME
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def environment_line(env: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env.items()))


def known_failures(config: pytest.Config, roots: list[Path]) -> KnownFailures | None:
    """--known-failures, loaded (a usage error when it is not right), or None."""
    value = config.getoption("--known-failures")
    if not value:
        return None
    path = resolve_known(str(value), roots[0] if roots else Path.cwd())
    try:
        return KnownFailures(load_known(path))
    except KnownFailuresError as exc:
        raise pytest.UsageError(str(exc)) from None
