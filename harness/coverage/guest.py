# SPDX-License-Identifier: MIT
"""Copy a guest's gcov counters (/sys/kernel/debug/gcov/**.gcda) to the host.

The counters of a module outlive its unloading (gcov_persist), so one copy just before a VM is
closed holds everything its tests ran; a VM that died takes its counters with it.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Protocol

from harness.ssh.command import CommandResult

GCOV_ROOT = "/sys/kernel/debug/gcov"
NO_GCOV_EXIT = 3
COPY_TIMEOUT_S = 30.0  # a few dozen small files (stretched for TCG)
_STAGING = "/tmp/harness-gcov"
_COPY_COUNTERS = f"""
set -e
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
[ -d {GCOV_ROOT} ] || exit {NO_GCOV_EXIT}
rm -rf {_STAGING} {_STAGING}.tar
mkdir {_STAGING}
cd {GCOV_ROOT}
# debugfs says every file is empty (size 0), so tar would store nothing: cat reads them whole.
find . -name '*.gcda' | while read -r f; do
    mkdir -p "{_STAGING}/${{f%/*}}"
    cat "$f" >"{_STAGING}/$f"
done
tar -C {_STAGING} -cf {_STAGING}.tar .
rm -rf {_STAGING}
"""


class GuestShell(Protocol):
    """What is needed of a VM's SSH session (harness.ssh.session.SshSession)."""

    def run(self, command: str, timeout: float, *, check: bool = ...) -> CommandResult: ...

    def get(self, remote: str, local: str | Path) -> None: ...


class CounterCopyError(RuntimeError):
    """The guest's counters could not be copied; the message says why."""


def fetch_counters(ssh: GuestShell, dest: Path, timeout_scale: float = 1.0) -> int:
    """Copy the guest's .gcda files under `dest`, at their paths below GCOV_ROOT (the object's
    path as compiled); the number copied (0: the kernel has no gcov)."""
    result = ssh.run(_COPY_COUNTERS, COPY_TIMEOUT_S * timeout_scale, check=False)
    if result.exit_status == NO_GCOV_EXIT:
        return 0
    if result.exit_status != 0:
        raise CounterCopyError(f"copying the gcov counters failed: {result.stderr.strip()[-300:]}")
    with tempfile.TemporaryDirectory(prefix="gcov-") as scratch:
        archive = Path(scratch) / "gcda.tar"
        ssh.get(f"{_STAGING}.tar", archive)
        ssh.run(f"rm -f {_STAGING}.tar", 30.0 * timeout_scale, check=False)
        return extract_counters(archive, dest)


def extract_counters(archive: Path, dest: Path) -> int:
    """Unpack the .gcda files of `archive` under `dest`; anything else (links, absolute or
    climbing names) is refused: the archive came from a guest."""
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = Path(member.name)
            if member.isdir():
                continue
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                raise CounterCopyError(f"unexpected entry {member.name!r} in the guest's counters")
            if name.suffix != ".gcda":
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            count += 1
    return count
