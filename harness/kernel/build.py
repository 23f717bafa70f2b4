# SPDX-License-Identifier: MIT
"""Build a guest kernel from source: Debian's linux-source package or a developer's tree.

    build = build_kernel()                                    # Debian trixie's 6.12, base+debug
    build = build_recipe_kernel(find_kernel_recipe("debug"))  # the same as `--kernel debug`
    bundle = prepare_custom_kernel(build.build_dir)           # then boot it like any built tree

Steps, each a progress line with its elapsed time:

  source   Debian's `linux-source-<series>` (harness.debian.unpacked_package), its tarball
           extracted once into `<cache>/kernel-src/<package>_<version>/`; or a tree you pass
  config   in a scratch directory: `make tinyconfig`, `merge_config.sh -m` of the fragments
           (vm_images/kernels/: base.config, debug.config, or your own), `make olddefconfig`,
           then every fragment line checked against the result (kernel_fragments.py)
  build    out of tree in `<cache>/kernel-builds/<source>-<hash of the final .config>/`
           (O=), `make -j$(nproc)` with ccache when installed; a heartbeat (on a terminal a
           bar redrawn every 5 s, in a log a line every 30 s) with the objects compiled so
           far, and for a build from scratch the share of the last such build's count and
           the time left

The build directory is kept between runs and keyed by the merged config, so a second build
of the same source and config only recompiles what changed (kbuild's own dependency
tracking), and ccache (in `<cache>/ccache/` unless CCACHE_DIR is set) serves objects a
previous build directory already compiled. `kernel-build.json` in the build directory is
written when make succeeds; the full make output is in `build.log` beside it.

A developer's tree must be clean (no .config or objects in it): kbuild refuses O= builds
from a tree that was built in place (`make mrproper` cleans it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.cache import cache_dir
from harness.core.cached_build import cached_build
from harness.core.progress import (
    LastTotals,
    Progress,
    clear_status,
    heartbeat_every,
    heartbeat_line,
    stderr_progress,
)
from harness.core.records import write_record
from harness.debian import unpacked_package
from harness.debian.hostdeps import PROFILES, missing_packages
from harness.images.build import recipe_dir
from harness.kernel.fragments import (
    Request,
    enabled_count,
    merge_requests,
    parse_fragment,
    verify_config,
    with_base,
)
from harness.kernel.layout import safe_name

DEFAULT_PACKAGE = "linux-source-6.12"
DEFAULT_SUITE = "trixie"
DEFAULT_FRAGMENTS = ("base.config", "debug.config")
BASE_TARGET = "tinyconfig"
RECORD_FILE = "kernel-build.json"
LOG_FILE = "build.log"
CCACHE_ENV = "CCACHE_DIR"
# Build directories (~0.5 GB each) kept per source tree: the newest, and the one before it
# (switching between two fragment sets, e.g. with and without debug.config, stays cheap).
KEEP_BUILDS_PER_SOURCE = 2

_OBJECT_LINE = re.compile(r"^\s+(CC|AS|LD|AR|CC \[M\]|LD \[M\])\s+(\S+)")


class KernelBuildError(RuntimeError):
    """A step of building a kernel from source failed; the message says which and why."""


@dataclass(frozen=True)
class KernelTree:
    """A kernel source tree to build from, and the name that keys its builds."""

    path: Path
    name: str  # e.g. "linux-source-6.12_6.12.117-1", or "<dir>-<hash of its path>"


@dataclass(frozen=True)
class KernelBuild:
    """A finished out-of-tree build: `build_dir` is what prepare_custom_kernel takes."""

    build_dir: Path
    release: str
    config_hash: str
    fragments: tuple[str, ...]
    enabled_symbols: int
    modules: int
    vmlinux_bytes: int
    seconds: float  # wall time of the last make that built it
    compiled: int  # objects compiled by that make (0: nothing had changed)


def fragment_dir() -> Path:
    """vm_images/kernels/ (found like the image recipes)."""
    return recipe_dir() / "kernels"


def resolve_fragments(fragments: Sequence[str | Path]) -> list[Path]:
    """Names in vm_images/kernels/ ("debug" or "debug.config") or paths to fragment files."""
    paths = []
    for fragment in fragments:
        path = Path(fragment)
        if not path.is_file() and path.parent == Path("."):
            name = path.name if path.suffix == ".config" else f"{path.name}.config"
            path = fragment_dir() / name
        if not path.is_file():
            raise KernelBuildError(
                f"config fragment {fragment} not found (neither a file nor a fragment in "
                f"{fragment_dir()})"
            )
        paths.append(path.resolve())
    return paths


def fragment_requests(paths: Sequence[Path]) -> dict[str, Request]:
    return merge_requests(
        parse_fragment(path.read_text(encoding="utf-8"), path.name) for path in paths
    )


def debian_kernel_tree(
    package: str = DEFAULT_PACKAGE,
    suite: str = DEFAULT_SUITE,
    progress: Progress = stderr_progress,
) -> KernelTree:
    """Debian's kernel source package, unpacked, its tarball extracted once into the cache."""
    unpacked = unpacked_package(package, suite)
    tarballs = sorted((unpacked / "usr/src").glob("linux-source-*.tar.*"))
    if not tarballs:
        raise KernelBuildError(f"{package} from {suite} holds no usr/src/linux-source-*.tar.*")
    name = safe_name(f"{package}_{unpacked.name}")

    def extract(scratch: Path) -> Path:
        started = time.monotonic()
        progress(f"kernel source: extracting {tarballs[0].name}")
        # GNU tar: faster than tarfile on ~80k files, and on every Python (tarfile's
        # extraction filters arrived in 3.11.4; Debian 12 has 3.11.2).
        untar = subprocess.run(
            ["tar", "-xf", str(tarballs[0]), "-C", str(scratch), "--no-same-owner"],
            capture_output=True,
            text=True,
            check=False,
        )
        if untar.returncode != 0:
            raise KernelBuildError(f"extracting {tarballs[0]} failed: {untar.stderr[-500:]}")
        progress(f"kernel source: extracted in {_elapsed(started)}")
        return cache_dir("kernel-src") / name

    final = cached_build(cache_dir("kernel-src") / name, extract, _if_dir).value
    trees = [p for p in final.iterdir() if (p / "Makefile").is_file() and (p / "Kconfig").is_file()]
    if len(trees) != 1:
        raise KernelBuildError(f"expected one kernel tree in {final}, found {len(trees)}")
    return KernelTree(trees[0], name)


def _if_dir(path: Path) -> Path | None:
    return path if path.is_dir() else None


def user_kernel_tree(path: Path) -> KernelTree:
    """A developer's source tree; its builds are keyed by its absolute path."""
    tree = Path(os.path.abspath(path.expanduser()))
    if not ((tree / "Makefile").is_file() and (tree / "Kconfig").is_file()):
        raise KernelBuildError(f"{tree} is not a kernel source tree (no Makefile and Kconfig)")
    if (tree / ".config").exists() or (tree / "include/config").exists():
        raise KernelBuildError(
            f"{tree} has been configured or built in place: kbuild cannot build it out of "
            "tree (O=) then. Run `make mrproper` in it (this removes its .config; keep a copy), "
            "or pass that build directory as --kernel instead"
        )
    extracted = _extracted_debian_name(tree)
    if extracted is not None:
        # The tree debian_kernel_tree extracted: the same source under the same name, so a
        # build of it by path reuses the build directory of the same config.
        return KernelTree(tree, extracted)
    digest = hashlib.sha256(str(tree).encode()).hexdigest()[:8]
    return KernelTree(tree, safe_name(f"{tree.name}-{digest}"))


def build_user_tree(
    tree: KernelTree, fragments: Sequence[str], progress: Progress = stderr_progress
) -> Path:
    """The build directory of the user's tree (user_kernel_tree) with base.config +
    `fragments`, built now (make brings an earlier build of the same config up to date rather
    than starting over)."""
    return build_kernel(tree, with_base(fragments), progress=progress).build_dir


def _extracted_debian_name(tree: Path) -> str | None:
    """`<package>_<version>` when `tree` is a Debian source tree extracted into the cache."""
    try:
        parent = tree.resolve().parent
    except OSError:
        return None
    if parent.parent == cache_dir("kernel-src"):
        return parent.name
    return None


def compiler_command(cc: str = "gcc") -> str:
    """CC for make: `ccache <cc>` when ccache is installed."""
    return f"ccache {cc}" if shutil.which("ccache") else cc


def make_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault(CCACHE_ENV, str(cache_dir("ccache")))
    env["LC_ALL"] = "C"
    return env


def build_key(tree: KernelTree, dotconfig: str) -> str:
    """<source name>-<hash of the merged .config>: the .config holds everything kbuild is
    told (the compiler's version included), so equal keys mean reusable objects."""
    return f"{tree.name}-{hashlib.sha256(dotconfig.encode()).hexdigest()[:16]}"


COVERAGE_LINES = (
    "\n# vfio-harness: coverage (gcov, KCOV)\nGCOV_PROFILE := y\nKCOV_INSTRUMENT := y\n"
)


def coverage_tree(
    tree: KernelTree, directories: Sequence[str], progress: Progress = stderr_progress
) -> KernelTree:
    """A copy of `tree` whose `directories` are compiled for gcov and KCOV (kbuild's
    per-directory switches, which act only when the config turns GCOV_KERNEL or KCOV on).

    The copy is of hard links, made once into the cache; each edited Makefile is a new file, so
    the tree it came from (which other builds share) is never changed. Its name carries the
    directories, so its builds have keys of their own."""
    if not directories:
        return tree
    for directory in directories:
        if not (tree.path / directory / "Makefile").is_file():
            raise KernelBuildError(f"coverage: {tree.path} has no {directory}/Makefile")
    digest = hashlib.sha256("\n".join(directories).encode()).hexdigest()[:12]
    name = safe_name(f"{tree.name}+coverage-{digest}")

    def copy(scratch: Path) -> Path:
        progress(f"kernel source: a copy of {tree.path.name} with {', '.join(directories)} "
                 "compiled for coverage")  # fmt: skip
        copied = scratch / tree.path.name
        linked = subprocess.run(
            ["cp", "-al", str(tree.path), str(copied)], capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if linked.returncode != 0:
            raise KernelBuildError(f"copying {tree.path} failed: {linked.stderr[-300:]}")
        for directory in directories:
            makefile = copied / directory / "Makefile"
            text = makefile.read_text(encoding="utf-8")
            makefile.unlink()  # a hard link to the shared tree's file: write a new one
            makefile.write_text(text + COVERAGE_LINES, encoding="utf-8")
        return cache_dir("kernel-src") / name

    final = cached_build(cache_dir("kernel-src") / name, copy, _if_dir).value
    return KernelTree(final / tree.path.name, name)


def configure(
    tree: KernelTree,
    fragments: Sequence[Path],
    scratch: Path,
    *,
    cc: str,
    progress: Progress = stderr_progress,
) -> str:
    """The verified merged .config text, made in `scratch` (an empty directory)."""
    requests = fragment_requests(fragments)
    started = time.monotonic()
    make = ["make", "-C", str(tree.path), f"O={scratch}", f"CC={cc}"]
    _run([*make, BASE_TARGET], f"make {BASE_TARGET}")
    merge = tree.path / "scripts/kconfig/merge_config.sh"
    _run(
        [
            str(merge),
            "-m",
            "-O",
            str(scratch),
            str(scratch / ".config"),
            *map(str, fragments),
        ],
        "merge_config.sh",
        cwd=tree.path,
    )
    _run([*make, "olddefconfig"], "make olddefconfig")
    dotconfig = (scratch / ".config").read_text(encoding="utf-8")
    verify_config(requests, dotconfig)
    progress(
        f"kernel config: {BASE_TARGET} + {' + '.join(p.name for p in fragments)}: "
        f"{enabled_count(dotconfig)} symbols on, all {len(requests)} fragment lines kept "
        f"({_elapsed(started)})"
    )
    return dotconfig


def build_kernel(
    tree: KernelTree | None = None,
    fragments: Sequence[str | Path] = DEFAULT_FRAGMENTS,
    *,
    cc: str = "gcc",
    jobs: int | None = None,
    coverage_dirs: Sequence[str] = (),
    progress: Progress = stderr_progress,
) -> KernelBuild:
    """Configure and build `tree` (default: Debian trixie's linux-source-6.12) out of tree;
    `coverage_dirs` of it compiled for coverage (coverage_tree).

    KernelBuildError (or kernel_fragments.ConfigMismatchError) says what failed.
    """
    missing = missing_packages(PROFILES["kernel"])
    if missing:
        raise KernelBuildError(
            f"building a kernel needs {', '.join(missing)}: vfio-harness setup --profile kernel"
        )
    if tree is None:
        tree = debian_kernel_tree(progress=progress)
    paths = resolve_fragments(fragments)
    compiler = compiler_command(cc)
    tree = coverage_tree(tree, coverage_dirs, progress)
    root = cache_dir("kernel-builds")
    scratch = Path(tempfile.mkdtemp(prefix=".config-", dir=root))
    try:
        dotconfig = configure(tree, paths, scratch, cc=compiler, progress=progress)
        key = build_key(tree, dotconfig)
        build_dir = root / key
        with _locked(build_dir):
            build_dir.mkdir(exist_ok=True)
            existing = build_dir / ".config"
            if not existing.is_file() or existing.read_text(encoding="utf-8") != dotconfig:
                shutil.copyfile(scratch / ".config", existing)
            (build_dir / RECORD_FILE).unlink(missing_ok=True)
            seconds, compiled = _make(
                tree, build_dir, compiler, jobs or os.cpu_count() or 1, progress
            )
            build = _result(build_dir, key, paths, dotconfig, seconds, compiled)
            write_record(build, build_dir / RECORD_FILE, build_dir=str(build_dir),
                         source=str(tree.path))  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for old in superseded_builds(root, tree.name, keep=KEEP_BUILDS_PER_SOURCE):
        with _locked(old, wait=False) as free:
            if free:
                progress(f"kernel build: removing the superseded build directory {old.name}")
                shutil.rmtree(old, ignore_errors=True)
    progress(
        f"kernel build: {build.release} in {build.build_dir} ({build.modules} modules, "
        f"vmlinux {build.vmlinux_bytes >> 20} MiB)"
    )
    return build


@dataclass
class _MakeState:
    compiled: int = 0  # CC and AS lines: objects compiled (ccache hits included)
    last: str = ""  # the last object make reported


def _make(
    tree: KernelTree, build_dir: Path, compiler: str, jobs: int, progress: Progress
) -> tuple[float, int]:
    """`make -jN all` in build_dir, its output in build.log, a heartbeat line meanwhile."""
    command = ["make", "-C", str(tree.path), f"O={build_dir}", f"CC={compiler}", f"-j{jobs}", "all"]
    progress(f"kernel build: make -j{jobs} (CC={compiler}) in {build_dir}")
    started = time.monotonic()
    state = _MakeState()
    done = threading.Event()
    # A build from scratch compiles about what the last one from scratch of this source did
    # (a later build in the same directory compiles only what changed: no total for it).
    totals = LastTotals(cache_dir("progress") / "totals.json")
    job = f"kernel-build:{build_dir.name.rsplit('-', 1)[0]}"
    from_scratch = not (build_dir / "vmlinux").exists()
    total = totals.get(job) if from_scratch else None

    def heartbeat() -> None:
        while not done.wait(heartbeat_every()):
            elapsed = time.monotonic() - started
            rest = f"{_elapsed(started)} elapsed, at {state.last}"
            progress(
                heartbeat_line("kernel build", state.compiled, total, elapsed, "objects", rest)
            )

    beat = threading.Thread(target=heartbeat, daemon=True)
    log_path = build_dir / LOG_FILE
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=make_env(),
        )
        beat.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                if match := _OBJECT_LINE.match(line):
                    state.last = match[2]
                    if match[1].startswith("CC") or match[1] == "AS":
                        state.compiled += 1
            returncode = process.wait()
        except BaseException:
            process.kill()  # never leave a compile running behind us
            process.wait()
            raise
        finally:
            done.set()
            beat.join()
            clear_status()  # a failure's message starts on a line of its own
    seconds = time.monotonic() - started
    if returncode != 0:
        tail = "".join(
            log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-30:]
        )
        raise KernelBuildError(
            f"make in {build_dir} failed (exit {returncode}) after {_elapsed(started)}; "
            f"full output in {log_path}:\n{tail}"
        )
    compiled = state.compiled
    if from_scratch:
        totals.record(job, compiled)
    progress(f"kernel build: make done in {_elapsed(started)}, {compiled} objects compiled")
    return seconds, compiled


def _result(
    build_dir: Path,
    key: str,
    fragments: Sequence[Path],
    dotconfig: str,
    seconds: float,
    compiled: int,
) -> KernelBuild:
    release = (build_dir / "include/config/kernel.release").read_text(encoding="utf-8").strip()
    order = build_dir / "modules.order"
    modules = len(order.read_text(encoding="utf-8").split()) if order.is_file() else 0
    return KernelBuild(
        build_dir=build_dir,
        release=release,
        config_hash=key.rsplit("-", 1)[1],
        fragments=tuple(p.name for p in fragments),
        enabled_symbols=enabled_count(dotconfig),
        modules=modules,
        vmlinux_bytes=(build_dir / "vmlinux").stat().st_size,
        seconds=round(seconds, 1),
        compiled=compiled,
    )


def _run(command: list[str], what: str, *, cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=make_env(),
            check=False,
        )
    except FileNotFoundError as err:
        raise KernelBuildError(
            f"{what}: {err.filename} not found (vfio-harness setup --profile kernel)"
        ) from err
    if result.returncode != 0:
        output = (result.stdout + result.stderr).splitlines()[-30:]
        raise KernelBuildError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(output))


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def superseded_builds(root: Path, name: str, keep: int) -> list[Path]:
    """Finished build directories of source `name` beyond the `keep` most recently built."""
    pattern = re.compile(re.escape(name) + r"-[0-9a-f]{16}")
    finished = [
        record.parent
        for record in root.glob(f"*/{RECORD_FILE}")
        if pattern.fullmatch(record.parent.name)
    ]
    finished.sort(key=lambda d: (d / RECORD_FILE).stat().st_mtime, reverse=True)
    return finished[keep:]


@contextlib.contextmanager
def _locked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Holds the lock of `path`; yields False (not holding it) when busy and not `wait`."""
    with path.with_name(f".{path.name}.lock").open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
