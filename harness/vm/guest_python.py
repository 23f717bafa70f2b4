# SPDX-License-Identifier: MIT
"""Run Python in a guest against the harness's own bindings.

    result = run_guest_python(vm, "from harness.refdev import registers; print(registers.REG_ID)")
    result.stdout

The guest gets the guest-safe part of the harness (harness.core, .uapi, .mdev, .refdev, .qemu,
.nested, .fuzz and .mgmt; stdlib-only, no paramiko; and the guest test runner,
harness.plugin.guest_runner, which needs the guest's pytest too) as one tar over SFTP,
unpacked into /opt/vfio-harness. The tar's digest is left beside it, so a VM that already has
this exact tree (a shared VM, later tests) is not sent it again. Scripts run with the guest's
python3 and PYTHONPATH=/opt/vfio-harness.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import harness
from harness.ssh.command import CommandResult
from harness.vm.machine import Vm

GUEST_ROOT = "/opt/vfio-harness"
DIGEST_FILE = ".digest"
# The packages that run in guests: the standard-library layers at the bottom of the stack
# (README's layout). harness.nested drives a nested QEMU from inside the guest
# (tests/vm/test_nested.py); harness/__init__.py imports nothing.
GUEST_PACKAGES = ("core", "uapi", "mdev", "refdev", "qemu", "nested", "fuzz", "mgmt")
GUEST_MODULES = ("__init__.py",)
# The guest side of the pytest plugin. Its package __init__ is replaced by a stub: the host
# plugin's __init__ registers host fixtures, which a guest has no use for.
GUEST_PLUGIN_MODULES = (
    "guest_runner.py",
    "protocol.py",
    "device_check.py",
)
GUEST_PLUGIN_INIT = b'"""The guest side of the vfio-harness plugin (see its guest_runner)."""\n'
_FIXED_MTIME = 1_700_000_000  # the same tree gives the same tar, hence the same digest


def guest_files(root: Path | None = None) -> Iterator[tuple[Path | bytes, str]]:
    """(file or contents, name in the tar) for every guest-side source file, in a stable order."""
    package = root or Path(harness.__file__).parent
    for name in GUEST_MODULES:
        yield package / name, f"harness/{name}"
    for sub in GUEST_PACKAGES:
        for path in sorted((package / sub).rglob("*.py")):
            yield path, f"harness/{path.relative_to(package).as_posix()}"
    yield GUEST_PLUGIN_INIT, "harness/plugin/__init__.py"
    for name in GUEST_PLUGIN_MODULES:
        yield package / "plugin" / name, f"harness/plugin/{name}"


def tarball(files: Iterable[tuple[Path | bytes, str]]) -> bytes:
    """An uncompressed, reproducible tar of (file or contents, name) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for source, name in files:
            data = source if isinstance(source, bytes) else source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = _FIXED_MTIME
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def harness_tarball(root: Path | None = None) -> bytes:
    """The guest-side harness as an uncompressed, reproducible tar."""
    return tarball(guest_files(root))


def push_harness(vm: Vm) -> str:
    """Make GUEST_ROOT hold this harness's guest-side tree; returns the tree's digest."""
    return push_tree(vm, harness_tarball(), GUEST_ROOT)


def push_tree(vm: Vm, data: bytes, destination: str) -> str:
    """Make the guest's `destination` hold exactly the tar `data`; returns its digest.

    Nothing is sent when the directory already holds that tar (its digest is kept beside it).
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    root = shlex.quote(destination)
    if vm.run(f"cat {root}/{DIGEST_FILE} 2>/dev/null || true").strip() == digest:
        return digest
    upload = f"/tmp/vfio-harness-{digest}.tar"
    try:
        vm.ssh.sftp.putfo(io.BytesIO(data), upload)
    except OSError as err:
        err.add_note(f"while copying a tree for {destination} to {upload} in the guest")
        raise
    # Unpacked beside the old tree and swapped in, so a failure never leaves half a tree.
    vm.run(
        f"rm -rf {root}.new && mkdir -p {root}.new && tar -xf {upload} -C {root}.new"
        f" && echo {digest} >{root}.new/{DIGEST_FILE} && rm -rf {root} && mv {root}.new {root}"
        f"; status=$?; rm -f {upload}; exit $status"
    )
    return digest


def run_guest_python(
    vm: Vm,
    script: str,
    *,
    args: Sequence[str] = (),
    timeout: float = 120.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run `script` with the guest's python3 and the harness importable.

    `timeout` is scaled for slow accelerators like vm.run's. With `check`, a non-zero exit
    raises CommandFailed carrying stdout and the traceback's end.
    """
    push_harness(vm)
    name = hashlib.sha256(script.encode()).hexdigest()[:12]
    path = f"/tmp/vfio-harness-script-{name}.py"
    vm.ssh.write_text(path, script)
    return vm.ssh.run(
        ["python3", path, *args],
        timeout * vm.accelerator.timeout_scale,
        check=check,
        env={"PYTHONPATH": GUEST_ROOT, **(env or {})},
    )
