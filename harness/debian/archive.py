# SPDX-License-Identifier: MIT
"""A private apt state for fetching Debian packages without touching the host's apt.

Each (mirror, keyring, suites) combination gets its own directory under the harness cache,
holding a sources.list, an apt.conf, the package lists and apt's binary cache. apt is pointed
at it with $APT_CONFIG, which also stops it from reading the host's apt.conf.d: hooks there
(appstream, packagekit, image clean-up scripts) must not run on our behalf.

Concurrency: one lock file per state. `update()` holds it exclusively; look-ups and downloads
hold it shared, so parallel pytest-xdist workers read the lists together but never while they
are being rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote

from harness.core.cache import cache_dir
from harness.debian.mirror import MIRROR_ENV, DebianMirror, debian_mirror

DEFAULT_MAX_AGE_SECONDS = 12 * 3600
APT_TIMEOUT_SECONDS = 900
STDERR_TAIL_LINES = 15

# Debian policy: package names are [a-z0-9][a-z0-9+.-]+; suites are similar. Checking them
# keeps both safe to use in file names and on apt's command line.
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")


class AptRunner(Protocol):
    """Runs one apt command; injected so tests can stand in for apt and the network."""

    def __call__(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]: ...


class AptError(RuntimeError):
    """An apt command failed; the message carries apt's stderr tail and what to try."""

    def __init__(
        self, action: str, argv: Sequence[str], returncode: int, stderr: str, hint: str
    ) -> None:
        self.action = action
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail(stderr)
        super().__init__(
            f"{action} failed (exit {returncode}): {' '.join(self.argv)}\n"
            f"{self.stderr_tail}\n"
            f"{hint}"
        )


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    kept = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(f"  | {line}" for line in kept[-lines:]) or "  | (no output on stderr)"


def run_apt(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """The real runner. A missing apt or a hang becomes a failed result, not an exception."""
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        message = f"{argv[0]} not found: fetching Debian packages needs apt (a Debian host)"
        return subprocess.CompletedProcess(list(argv), 127, "", message)
    except subprocess.TimeoutExpired:
        message = f"timed out after {APT_TIMEOUT_SECONDS} s"
        return subprocess.CompletedProcess(list(argv), -1, "", message)


def validate_package_name(package: str) -> None:
    if not _PACKAGE_NAME.match(package):
        raise ValueError(f"not a Debian package name: {package!r}")


def validate_suite_name(suite: str) -> None:
    if not _SUITE_NAME.match(suite):
        raise ValueError(f"not a Debian suite name: {suite!r}")


def sources_list_text(mirror: DebianMirror, suites: Iterable[str]) -> str:
    """One `deb` line per suite, component main, verified with the mirror's keyring."""
    return "".join(
        f"deb [signed-by={mirror.keyring}] {mirror.uri} {suite} main\n" for suite in suites
    )


def state_key(sources_list: str) -> str:
    """Names the state directory: the sources.list says everything that makes a state differ."""
    return hashlib.sha256(sources_list.encode()).hexdigest()[:16]


def apt_config_text(state_dir: Path, sandbox_user: str) -> str:
    """apt.conf for a private state rooted at `state_dir`.

    Read via $APT_CONFIG, before apt would read the host's configuration; pointing
    Dir::Etc::Main/Parts at nothing here is what keeps the host's settings and hooks out.
    """
    empty = state_dir / "empty.d"
    settings = {
        "Dir::Etc::Main": "/dev/null",
        "Dir::Etc::Parts": empty,
        "Dir::Etc::SourceList": state_dir / "sources.list",
        "Dir::Etc::SourceParts": empty,
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": empty,
        "Dir::State": state_dir / "state",
        "Dir::State::Lists": state_dir / "lists",
        "Dir::State::status": state_dir / "status",
        "Dir::Cache": state_dir / "cache",
        # Only the binary cache is used; the source cache would double the disk use.
        "Dir::Cache::srcpkgcache": "",
        "Dir::Log": state_dir / "log",
        # sid's Release often carries a Valid-Until already in the past.
        "Acquire::Check-Valid-Until": "false",
        "Acquire::Languages": "none",
        "Acquire::GzipIndexes": "true",
        # Without this, an unreachable mirror is only a warning and apt exits 0.
        "APT::Update::Error-Mode": "any",
        # The lock file below serialises us; apt's own locks would need root.
        "Debug::NoLocking": "true",
        # Run apt's download methods as ourselves: the cache is ours, not _apt's.
        "APT::Sandbox::User": sandbox_user,
    }
    return "".join(f'{key} "{value}";\n' for key, value in settings.items())


def apt_environment(state_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment (proxies still apply) plus our config and a stable locale."""
    env = dict(os.environ if base is None else base)
    env["APT_CONFIG"] = str(state_dir / "apt.conf")
    env["LC_ALL"] = "C.UTF-8"
    return env


def parse_print_uris(stdout: str) -> tuple[str, str]:
    """(URI, version) from `apt-get download --print-uris` output.

    A line reads `'<uri>' <name>_<version>_<arch>.deb <size> <hash>`; apt builds that file
    name from the package's full version, with the epoch's ':' escaped as %3a.
    """
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith("'") and fields[1].endswith(".deb"):
            name_version_arch = unquote(fields[1]).removesuffix(".deb").split("_")
            if len(name_version_arch) == 3:
                return fields[0].strip("'"), name_version_arch[1]
    raise ValueError(f"no package URI in apt-get --print-uris output: {stdout!r}")


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic, and a no-op when unchanged so a warm run writes nothing."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text(encoding="utf-8") == text:
            return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class AptArchive:
    """Debian `suites` from one mirror, through a private apt state in the harness cache.

    `mirror` overrides the mirror (else $HARNESS_DEBIAN_MIRROR, else the host's apt config).
    Look-ups and downloads refresh the package lists first when older than `max_age_seconds`.
    """

    def __init__(
        self,
        suites: Iterable[str],
        mirror: str | None = None,
        *,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        runner: AptRunner = run_apt,
    ) -> None:
        self.suites = tuple(sorted(set(suites)))
        if not self.suites:
            raise ValueError("AptArchive needs at least one suite")
        for suite in self.suites:
            validate_suite_name(suite)
        self.mirror = debian_mirror(mirror)
        self.max_age_seconds = max_age_seconds
        self._runner = runner
        self.sources_list = sources_list_text(self.mirror, self.suites)
        self.state_dir = cache_dir("apt", state_key(self.sources_list))

    def __repr__(self) -> str:
        return f"AptArchive({list(self.suites)!r}, mirror={self.mirror.uri!r})"

    @property
    def _stamp(self) -> Path:
        return self.state_dir / "updated"

    def is_fresh(self) -> bool:
        """Whether the last successful update is younger than the maximum age."""
        try:
            age = time.time() - self._stamp.stat().st_mtime
        except FileNotFoundError:
            return False
        return 0 <= age < self.max_age_seconds

    def update(self, *, force: bool = False) -> bool:
        """Refresh the package lists unless fresh; returns whether apt was run."""
        if not force and self.is_fresh():
            return False
        with self._locked(exclusive=True):
            # Another worker may have updated while we waited for the lock.
            if not force and self.is_fresh():
                return False
            self._prepare_state()
            self._stamp.unlink(missing_ok=True)
            self._apt(
                "updating the package lists", ["apt-get", "-q", "update"], self._update_hint()
            )
            # Build apt's binary cache now, under the exclusive lock, so readers never race
            # to build it.
            self._apt(
                "building apt's package cache",
                ["apt-cache", "gencaches"],
                f"The package lists may be damaged: delete {self.state_dir} and run again.",
            )
            self._stamp.touch()
        return True

    def candidate_version(self, package: str, suite: str) -> str:
        """The version `download(package, suite, ...)` would fetch."""
        validate_package_name(package)
        self._check_suite(suite)
        self.update()
        argv = ["apt-get", "-q", "download", "--print-uris", f"{package}/{suite}"]
        with self._locked(exclusive=False):
            result = self._apt(
                f"looking up {package} in {suite}", argv, self._lookup_hint(package, suite)
            )
        return parse_print_uris(result.stdout)[1]

    def download(
        self, package: str, suite: str, dest_dir: Path, *, version: str | None = None
    ) -> Path:
        """Fetch the .deb of `package` from `suite` (exactly `version` if given) into dest_dir."""
        validate_package_name(package)
        self._check_suite(suite)
        self.update()
        dest_dir.mkdir(parents=True, exist_ok=True)
        spec = f"{package}={version}" if version else f"{package}/{suite}"
        # A scratch directory tells us which file apt wrote, even if dest_dir has others.
        scratch = Path(tempfile.mkdtemp(prefix=".apt-download-", dir=dest_dir))
        try:
            with self._locked(exclusive=False):
                self._apt(
                    f"downloading {spec}",
                    ["apt-get", "-q", "download", spec],
                    self._lookup_hint(package, suite),
                    cwd=scratch,
                )
            return self._move_single_deb(scratch, dest_dir, spec)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _check_suite(self, suite: str) -> None:
        if suite not in self.suites:
            raise ValueError(f"suite {suite!r} is not one of this archive's {list(self.suites)}")

    @staticmethod
    def _move_single_deb(scratch: Path, dest_dir: Path, spec: str) -> Path:
        debs = sorted(scratch.glob("*.deb"))
        if len(debs) != 1:
            names = [p.name for p in debs]
            raise RuntimeError(f"apt-get download {spec} left {names}, expected one .deb")
        return debs[0].replace(dest_dir / debs[0].name)

    def _prepare_state(self) -> None:
        for sub in ("empty.d", "state", "log", "lists/partial", "cache/archives/partial"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        _write_if_changed(self.state_dir / "sources.list", self.sources_list)
        _write_if_changed(
            self.state_dir / "apt.conf", apt_config_text(self.state_dir, _current_user())
        )
        _write_if_changed(self.state_dir / "status", "")

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        with (self.state_dir / "lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield  # closing the file releases the lock

    def _apt(
        self, action: str, argv: Sequence[str], hint: str, *, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = self._runner(argv, cwd=cwd or self.state_dir, env=apt_environment(self.state_dir))
        if result.returncode != 0:
            shown = [f"APT_CONFIG={self.state_dir / 'apt.conf'}", *argv]
            raise AptError(action, shown, result.returncode, result.stderr or "", hint)
        return result

    def _update_hint(self) -> str:
        return (
            f"Check network access to {self.mirror.uri} (apt honours http_proxy/https_proxy), "
            f"or set {MIRROR_ENV} to a reachable Debian mirror. Keyring: {self.mirror.keyring}."
        )

    def _lookup_hint(self, package: str, suite: str) -> str:
        return (
            f"Check that {package} exists in Debian {suite} on {self.mirror.uri}; "
            f"if the download itself failed, check network access or set {MIRROR_ENV}."
        )
