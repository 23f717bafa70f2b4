# SPDX-License-Identifier: MIT
"""Build an out-of-tree module: in an image's build chroot, or against a kernel tree on the host.

In the chroot, each build gets a fresh copy of the source under /build/, and make runs in its
own mount and PID namespaces (`unshare --mount --propagation private --pid --fork
--kill-child`), with a proc mounted inside the chroot (sid's objtool reads it). When make
exits, fails or is killed, the namespaces die with it, taking the proc mount and any stray
process along: the host's mount table never sees the chroot.

The built .ko files are copied to `dest` (a new directory under the cache's `modules/` unless
given), with build.log beside them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.progress import Progress, stderr_progress
from harness.kmod.build_env import BuildEnv, root_problem
from harness.kmod.make_output import failure_lines, parse_make_output

MAKE_TIMEOUT_SECONDS = 900
CHROOT_BUILD_PARENT = "build"  # /build inside the chroot
CHROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
LOG_NAME = "build.log"
# A build for a kernel with gcov on (GCOV_PROFILE=y) leaves a notes file (.gcno) per object:
# kept in dest/gcov/ with the directory the compiler saw, which is where the kernel's debugfs
# shows the counters (/sys/kernel/debug/gcov/<that directory>/<object>.gcda).
GCOV_NOTES_DIR = "gcov"
GCOV_COMPILED_IN = "compiled-in"
# A source directory someone built in by hand holds kbuild output; never let it leak in.
BUILD_OUTPUT = (
    "*.o",
    "*.ko",
    "*.mod",
    "*.mod.c",
    ".*.cmd",
    "Module.symvers",
    "modules.order",
    ".tmp_versions",
    ".git",
)
_UNSAFE_IN_MAKE = re.compile(r"[^A-Za-z0-9_.+-]")


class ModuleBuildError(RuntimeError):
    """The module did not build; the message holds the compiler's error lines."""

    def __init__(self, message: str, *, errors: Sequence[str] = (), log: str = "") -> None:
        super().__init__(message)
        self.errors = tuple(errors)
        self.log = log


@dataclass(frozen=True)
class ModuleBuild:
    modules: tuple[Path, ...]  # the .ko files, in dest
    warnings: tuple[str, ...]  # "hello.c:12:5: warning: ...", paths relative to the source
    modpost_warnings: tuple[str, ...]  # "WARNING: modpost: ..."
    log: str  # make's whole output
    log_path: Path
    kernel_release: str
    seconds: float


def make_argv(
    kernel_dir: str,
    module_dir: str,
    *,
    extra_warnings: bool = False,
    extra_make_args: Sequence[str] = (),
    jobs: int | None = None,
) -> list[str]:
    """`make -C KERNEL M=MODULE modules`; extra_warnings adds W=1."""
    argv = ["make", f"-j{jobs or os.cpu_count() or 1}", "-C", kernel_dir, f"M={module_dir}"]
    if extra_warnings:
        argv.append("W=1")
    return [*argv, *extra_make_args, "modules"]


def namespaced_chroot_argv(root: Path, command: Sequence[str]) -> list[str]:
    """Run `command` chrooted into `root`, in namespaces that vanish when it ends."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--kill-child",
        f"--mount-proc={root / 'proc'}",
        "chroot",
        str(root),
        *command,
    ]


def chroot_environment() -> dict[str, str]:
    """Nothing of the caller's environment (CC, ARCH, MAKEFLAGS...) reaches the chroot's make."""
    return {"PATH": CHROOT_PATH, "LC_ALL": "C", "HOME": "/root"}


# Make variables that change what a module build makes: set by the harness only, so one left in
# a user's environment cannot change a module behind its cache key (a normal build into a test
# build, or one compiled for gcov, or back).
_MAKE_SWITCHES = ("HMDEV_FAULTS", "GCOV_PROFILE", "KCOV_INSTRUMENT")


def host_environment() -> dict[str, str]:
    """The caller's environment for a host build (a kernel tree may need its CC, PATH...),
    less the variables that would change our module behind its cache key."""
    environment = {k: v for k, v in os.environ.items() if k not in _MAKE_SWITCHES}
    return {**environment, "LC_ALL": "C"}


def kernel_release_of(kernel_build_dir: Path) -> str:
    """The release a prepared kernel build directory builds modules for."""
    path = kernel_build_dir / "include/config/kernel.release"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ModuleBuildError(
            f"{kernel_build_dir} is not a prepared kernel build directory ({path}: "
            f"{err.strerror}): run `make modules_prepare` (or a full build) in it first"
        ) from None


def build_module(
    source: Path,
    env: BuildEnv,
    *,
    dest: Path | None = None,
    extra_warnings: bool = False,
    extra_make_args: Sequence[str] = (),
    progress: Progress = stderr_progress,
) -> ModuleBuild:
    """Build the module in `source` inside `env`'s chroot for its kernel."""
    _check_source(source)
    problem = root_problem(f"building {source} in {env.root}")
    if problem:
        raise ModuleBuildError(problem)
    parent = env.root / CHROOT_BUILD_PARENT
    parent.mkdir(exist_ok=True)
    staged = _stage(source, parent)
    try:
        inside = f"/{CHROOT_BUILD_PARENT}/{staged.name}"
        make = make_argv(
            env.headers_dir, inside, extra_warnings=extra_warnings, extra_make_args=extra_make_args
        )
        job = _MakeJob(
            name=_module_name(source),
            argv=tuple(namespaced_chroot_argv(env.root, make)),
            environment=chroot_environment(),
            staged=staged,
            shown_dir=inside,
            release=env.kernel_release,
            dest=_destination(dest, source, env.kernel_release),
        )
        return _run_make(job, progress)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def build_module_host(
    source: Path,
    kernel_build_dir: Path,
    *,
    dest: Path | None = None,
    extra_warnings: bool = False,
    extra_make_args: Sequence[str] = (),
    make_env: Mapping[str, str] | None = None,
    progress: Progress = stderr_progress,
) -> ModuleBuild:
    """Build the module in `source` against a user's own kernel tree, with the host toolchain.

    The tree must be prepared (`make modules_prepare` or a full build); the host's compiler
    should be the one that built the kernel (CONFIG_CC_VERSION_TEXT in its .config).
    `make_env` are variables for make's environment, where a Makefile's own assignment wins
    (unlike a command-line variable): GCOV_PROFILE=y leaves a Kbuild's `GCOV_PROFILE := n`.
    """
    _check_source(source)
    kernel_dir = kernel_build_dir.resolve()
    release = kernel_release_of(kernel_dir)
    with tempfile.TemporaryDirectory(prefix="kmod-build-") as scratch:
        staged = _stage(source, Path(scratch))
        make = make_argv(
            str(kernel_dir),
            str(staged),
            extra_warnings=extra_warnings,
            extra_make_args=extra_make_args,
        )
        job = _MakeJob(
            name=_module_name(source),
            argv=tuple(make),
            environment={**host_environment(), **(make_env or {})},
            staged=staged,
            shown_dir=str(staged),
            release=release,
            dest=_destination(dest, source, release),
        )
        return _run_make(job, progress)


def _check_source(source: Path) -> None:
    if not ((source / "Kbuild").is_file() or (source / "Makefile").is_file()):
        raise ModuleBuildError(
            f"{source} has no Kbuild or Makefile: point at a kernel module's source directory"
        )


def _stage(source: Path, parent: Path) -> Path:
    """A fresh copy of the source; its name is safe to pass to make as M=."""
    staged = Path(tempfile.mkdtemp(prefix=f"{_module_name(source)}-", dir=parent))
    shutil.copytree(
        source, staged, ignore=shutil.ignore_patterns(*BUILD_OUTPUT), dirs_exist_ok=True
    )
    return staged


def _destination(dest: Path | None, source: Path, release: str) -> Path:
    if dest is not None:
        dest.mkdir(parents=True, exist_ok=True)
        return dest
    prefix = f"{_module_name(source)}-{release}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=cache_dir("modules")))


def _module_name(source: Path) -> str:
    """The source directory's name, made safe for M= and file names."""
    return _UNSAFE_IN_MAKE.sub("_", source.resolve().name) or "module"


@dataclass(frozen=True)
class _MakeJob:
    name: str
    argv: tuple[str, ...]
    environment: Mapping[str, str]
    staged: Path  # the copy of the source make builds in, as seen from the host
    shown_dir: str  # the same directory as make sees it (inside the chroot)
    release: str
    dest: Path


def _run_make(job: _MakeJob, progress: Progress) -> ModuleBuild:
    """Run make, keep its log in dest, and copy the .ko files there; raise on failure."""
    what = f"module {job.name} for {job.release}"
    progress(f"{what}: make ...")
    started = time.monotonic()
    log_path = job.dest / LOG_NAME
    argv = job.argv
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(job.environment),
            timeout=MAKE_TIMEOUT_SECONDS,
            check=False,
        )
        output = result.stdout.decode("utf-8", "replace")
        returncode = result.returncode
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode("utf-8", "replace")
        returncode = None
    except FileNotFoundError as err:
        raise ModuleBuildError(
            f"{argv[0]} not found: building modules needs it on this host ({err.filename})"
        ) from None
    log_path.write_text(f"$ {shlex.join(argv)}\n{output}", encoding="utf-8")
    seconds = time.monotonic() - started
    if returncode != 0:
        if returncode is None:
            status = f"timed out after {MAKE_TIMEOUT_SECONDS} s"
        else:
            status = f"make exit {returncode}"
        errors = failure_lines(output, job.shown_dir)
        shown = "\n".join(f"  | {line}" for line in errors)
        raise ModuleBuildError(
            f"building {what} failed ({status}):\n{shown}\nFull log: {log_path}",
            errors=errors,
            log=output,
        )
    parsed = parse_make_output(output, job.shown_dir)
    modules = _copy_modules(job.staged, job.dest)
    _keep_gcov_notes(job.staged, job.dest, job.shown_dir)
    if not modules:
        raise ModuleBuildError(
            f"building {what}: make succeeded but made no .ko: does the Kbuild file set obj-m?"
            f"\nFull log: {log_path}",
            log=output,
        )
    count = len(parsed.warnings) + len(parsed.modpost_warnings)
    progress(
        f"{what}: make ... {seconds:.1f} s, {count} warning{'' if count == 1 else 's'}, "
        f"{', '.join(m.name for m in modules)} in {job.dest}"
    )
    return ModuleBuild(
        modules=modules,
        warnings=parsed.warnings,
        modpost_warnings=parsed.modpost_warnings,
        log=output,
        log_path=log_path,
        kernel_release=job.release,
        seconds=round(seconds, 2),
    )


def _keep_gcov_notes(staged: Path, dest: Path, compiled_in: str) -> None:
    notes = sorted(staged.rglob("*.gcno"))
    if not notes:
        return
    kept = dest / GCOV_NOTES_DIR
    for note in notes:
        target = kept / note.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(note, target)
    (kept / GCOV_COMPILED_IN).write_text(compiled_in + "\n", encoding="utf-8")


def _copy_modules(staged: Path, dest: Path) -> tuple[Path, ...]:
    copied = []
    for module in sorted(staged.rglob("*.ko")):
        target = dest / module.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(module, target)
        copied.append(target)
    return tuple(copied)
