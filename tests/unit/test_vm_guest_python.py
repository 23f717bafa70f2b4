# SPDX-License-Identifier: MIT
"""The harness tree sent to guests: what it holds, that it is reproducible, and that it imports
with nothing but the standard library (a guest has no paramiko, pytest plugin or harness.vm);
the guest runner alone also needs pytest (the guest's python3-pytest).

Running it in real guests is in tests/vm/test_refdev.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from harness.vm.guest_python import harness_tarball
from tests.unit.tar_util import extract_all

# Imports every module of the tree from `root` alone: -I -S leaves only the standard library on
# sys.path besides it, so a module importing anything else fails here as it would in a guest.
IMPORT_ALL = """
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(root))
names = sorted(
    ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
    for p in root.rglob("*.py")
)
for name in names:
    if name not in sys.argv[2:]:
        importlib.import_module(name)
outside = sorted(
    n for n, m in sys.modules.items()
    if n.split(".")[0] == "harness" and not str(getattr(m, "__file__", "")).startswith(str(root))
)
assert not outside, outside
print(len(names))
"""
# Modules that also need the guest's pytest: imported with site-packages, paramiko blocked.
NEEDS_PYTEST = ("harness.plugin.guest_runner",)
IMPORT_WITH_PYTEST = """
import importlib, pathlib, sys
root = pathlib.Path(sys.argv[1])
sys.path.insert(0, str(root))
for blocked in ("paramiko", "cryptography", "qemu", "harness.vm", "harness.kmod"):
    sys.modules[blocked] = None
for name in sys.argv[2:]:
    importlib.import_module(name)
outside = sorted(
    n for n, m in sys.modules.items()
    if n.split(".")[0] == "harness" and m is not None
    and not str(getattr(m, "__file__", "")).startswith(str(root))
)
assert not outside, outside
"""


def names_in(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def test_the_tree_holds_the_guest_packages_only() -> None:
    names = names_in(harness_tarball())
    tops = {name.split("/")[1] for name in names}
    assert tops == {
        "__init__.py",
        "core",
        "uapi",
        "mdev",
        "refdev",
        "qemu",
        "nested",
        "fuzz",
        "mgmt",
        "plugin",
    }
    plugin = sorted(name for name in names if name.startswith("harness/plugin/"))
    assert plugin == [
        "harness/plugin/__init__.py",
        "harness/plugin/device_check.py",
        "harness/plugin/guest_runner.py",
        "harness/plugin/protocol.py",
    ]
    for needed in (
        "harness/uapi/__init__.py",
        "harness/uapi/raw/vfio.py",
        "harness/mdev/sysfs.py",
        "harness/refdev/device.py",
        "harness/refdev/registers.py",
    ):
        assert needed in names
    assert all(name.endswith(".py") for name in names)


def test_the_tarball_is_reproducible() -> None:
    assert harness_tarball() == harness_tarball()


def test_the_tree_imports_with_the_standard_library_alone(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(harness_tarball())) as archive:
        extract_all(archive, tmp_path)
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMPORT_ALL, str(tmp_path), *NEEDS_PYTEST],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(names_in(harness_tarball()))


def test_the_guest_runner_imports_with_pytest_alone(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(harness_tarball())) as archive:
        extract_all(archive, tmp_path)
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_WITH_PYTEST, str(tmp_path), *NEEDS_PYTEST],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
