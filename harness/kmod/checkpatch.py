# SPDX-License-Identifier: MIT
"""The kernel's scripts/checkpatch.pl, fetched from Debian's linux-source and run on files.

    report = run_checkpatch(sorted(Path("kmod").glob("*.[ch]")), strict=True)
    report.clean, report.errors, report.warnings, report.checks, report.messages

checkpatch comes from linux-source-<series> of the host's Debian release (bookworm: 6.1).
Its .deb holds the whole tree as one linux-source-*.tar.xz; only the files checkpatch reads in
`--no-tree` mode are extracted, into `<cache>/checkpatch/<package>_<version>/scripts/`:
checkpatch.pl, spelling.txt and const_structs.checkpatch. It reads nothing else unless asked:
checkpatch.rst (--verbose), the codespell dictionary (--codespell), a typedefs file
(--typedefsfile), and a .checkpatch.conf in the working directory, $HOME or .scripts/, plus
git when the working directory has a .git. Runs therefore happen in an empty directory that is
also $HOME, so a user's configuration or checkout never changes the verdict.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.progress import Progress, stderr_progress
from harness.debian import linux_source
from harness.debian.linux_source import LinuxSourceError
from harness.kmod.checkpatch_report import (
    CheckpatchOutputError,
    CheckpatchReport,
    parse_checkpatch_output,
)

SCRIPT_FILES = ("checkpatch.pl", "spelling.txt", "const_structs.checkpatch")
RUN_TIMEOUT_SECONDS = 300
_FALLBACK_PATH = "/usr/local/bin:/usr/bin:/bin"


class CheckpatchError(RuntimeError):
    """checkpatch could not be fetched or run; the message says why and what to do."""


@dataclass(frozen=True)
class Checkpatch:
    script: Path  # .../scripts/checkpatch.pl, beside the files it reads
    package: str
    version: str
    suite: str

    @property
    def label(self) -> str:
        return f"checkpatch.pl of {self.package} {self.version} ({self.suite})"


def source_package_for(suite: str | None) -> tuple[str, str]:
    """(suite, linux-source package): `suite`, or the host's Debian release."""
    try:
        return linux_source.source_package_for(suite)
    except LinuxSourceError as exc:
        raise CheckpatchError(f"{exc} as the suite to take checkpatch from") from None


def fetch_checkpatch(
    suite: str | None = None, *, mirror: str | None = None, progress: Progress = stderr_progress
) -> Checkpatch:
    """checkpatch.pl and the files it reads, from the cache (extracted from linux-source on
    first use, harness.debian.linux_source)."""
    chosen, _ = source_package_for(suite)
    members = {f"scripts/{name}": f"scripts/{name}" for name in SCRIPT_FILES}
    try:
        entry = linux_source.source_files(
            "checkpatch", chosen, members, mirror=mirror, progress=progress
        )
    except LinuxSourceError as exc:
        raise CheckpatchError(str(exc)) from None
    return Checkpatch(entry.path / "scripts" / SCRIPT_FILES[0], entry.package, entry.version,
                      entry.suite)  # fmt: skip


def checkpatch_argv(
    script: Path, files: Sequence[str], *, strict: bool, ignore: Sequence[str] = ()
) -> list[str]:
    """File mode without a kernel tree; findings and totals name their file."""
    argv = ["perl", str(script), "--no-tree", "--file", "--emacs", "--show-types"]
    argv += ["--summary-file", "--color=never"]
    if strict:
        argv.append("--strict")
    if ignore:
        argv.append("--ignore=" + ",".join(ignore))
    return [*argv, *files]


def run_checkpatch(
    paths: Sequence[Path],
    strict: bool = True,
    *,
    ignore: Sequence[str] = (),
    checkpatch: Checkpatch | None = None,
    progress: Progress = stderr_progress,
) -> CheckpatchReport:
    """Check source files (not patches); messages name the files as `paths` gave them."""
    if not paths:
        raise CheckpatchError("no files to check")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise CheckpatchError(f"not files: {', '.join(missing)}")
    tool = checkpatch or fetch_checkpatch(progress=progress)
    names = {str(Path(p).resolve()): str(p) for p in paths}
    argv = checkpatch_argv(tool.script, list(names), strict=strict, ignore=ignore)
    with tempfile.TemporaryDirectory(prefix="checkpatch-") as home:
        env = {"PATH": os.environ.get("PATH", _FALLBACK_PATH), "HOME": home, "LC_ALL": "C"}
        try:
            result = subprocess.run(
                argv,
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=RUN_TIMEOUT_SECONDS,
                check=False,
            )
        except FileNotFoundError:
            raise CheckpatchError(
                "perl not found: checkpatch.pl needs it (apt install perl)"
            ) from None
        except subprocess.TimeoutExpired:
            raise CheckpatchError(f"{tool.label} ran past {RUN_TIMEOUT_SECONDS} s") from None
    # 1 means "found problems"; anything else means checkpatch itself failed.
    if result.returncode not in (0, 1):
        raise CheckpatchError(
            f"{tool.label} failed (exit {result.returncode}):\n{result.stderr[-2000:]}"
        )
    try:
        report = parse_checkpatch_output(result.stdout, names)
    except CheckpatchOutputError as err:
        raise CheckpatchError(f"{tool.label}: {err}\nstderr:\n{result.stderr[-2000:]}") from None
    unreported = sorted(set(names.values()) - set(report.files))
    if unreported:
        raise CheckpatchError(
            f"{tool.label} printed no total for {', '.join(unreported)}:\n{result.stdout}"
        )
    return report
