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

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_dir
from harness.debian import AptArchive, unpacked_package
from harness.debian.mirror import host_codename
from harness.kmod.checkpatch_report import (
    CheckpatchOutputError,
    CheckpatchReport,
    parse_checkpatch_output,
)
from harness.vm.images import Progress, stderr_progress

# Debian release -> the linux-source package of its kernel series.
LINUX_SOURCE_PACKAGES = {"bookworm": "linux-source-6.1", "trixie": "linux-source-6.12"}
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
    chosen = suite or host_codename()
    if chosen not in LINUX_SOURCE_PACKAGES:
        known = ", ".join(LINUX_SOURCE_PACKAGES)
        raise CheckpatchError(
            f"no linux-source package known for Debian {chosen or '(unknown host release)'}: "
            f"pass one of {known} as the suite to take checkpatch from"
        )
    return chosen, LINUX_SOURCE_PACKAGES[chosen]


def fetch_checkpatch(
    suite: str | None = None, *, mirror: str | None = None, progress: Progress = stderr_progress
) -> Checkpatch:
    """checkpatch.pl from the cache, extracted from linux-source first if it is not there.

    A warm call asks apt (offline while its lists are fresh) for the candidate version only.
    """
    chosen, package = source_package_for(suite)
    archive = AptArchive([chosen], mirror)
    version = archive.candidate_version(package, chosen)
    entry = cache_dir("checkpatch") / f"{package}_{version.replace(':', '%3a')}"
    found = Checkpatch(entry / "scripts" / SCRIPT_FILES[0], package, version, chosen)
    if entry.is_dir():
        return found
    with _locked(entry):
        if entry.is_dir():
            return found
        progress(f"checkpatch: fetching {package} {version} from Debian {chosen} ...")
        unpacked = unpacked_package(package, chosen, archive=archive)
        scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
        try:
            extract_scripts(_source_tarball(unpacked, package), scratch / "scripts")
            scratch.chmod(0o755)
            scratch.rename(entry)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        progress(f"checkpatch: {found.script}")
    return found


def _source_tarball(unpacked: Path, package: str) -> Path:
    tarballs = sorted((unpacked / "usr" / "src").glob("linux-source-*.tar.xz"))
    if len(tarballs) != 1:
        raise CheckpatchError(
            f"{package} unpacked in {unpacked} holds {len(tarballs)} linux-source-*.tar.xz "
            "files, expected one: delete that directory to fetch the package again"
        )
    return tarballs[0]


def extract_scripts(tarball: Path, dest: Path) -> None:
    """Copy SCRIPT_FILES out of `tarball`'s <top>/scripts/, streaming, stopping once found."""
    wanted = {f"scripts/{name}": name for name in SCRIPT_FILES}
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball, mode="r|xz") as archive:
            for member in archive:
                name = wanted.get(member.name.partition("/")[2])
                if name is None or not member.isfile():
                    continue
                source = archive.extractfile(member)
                if source is None:
                    continue
                # Only the bytes are taken: the name is ours, no path from the archive is used.
                (dest / name).write_bytes(source.read())
                del wanted[member.name.partition("/")[2]]
                if not wanted:
                    break
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CheckpatchError(
            f"cannot read {tarball} ({err}): delete it to fetch the package again"
        ) from err
    if wanted:
        raise CheckpatchError(f"{tarball} has no {', '.join(sorted(wanted))}")
    (dest / SCRIPT_FILES[0]).chmod(0o755)


@contextlib.contextmanager
def _locked(entry: Path) -> Iterator[None]:
    with entry.with_name(f".{entry.name}.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


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
