# SPDX-License-Identifier: MIT
"""The private apt state and the unpacked-package cache, mostly with a stand-in for apt."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from harness.debian.archive import (
    AptArchive,
    AptError,
    apt_config_text,
    apt_environment,
    parse_print_uris,
    sources_list_text,
    state_key,
)
from harness.debian.mirror import DEFAULT_KEYRING, MIRROR_ENV, DebianMirror
from harness.debian.packages import PackageUnpackError, unpacked_entry_path, unpacked_package

MIRROR = "http://mirror.example/debian"
FAKE_PACKAGE = "fakepkg"
FAKE_VERSION = "1:2.0-1"
FAKE_DEB_NAME = "fakepkg_1%3a2.0-1_all.deb"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def fake_deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, tiny .deb so the unpacking path runs dpkg-deb for real."""
    tree = tmp_path_factory.mktemp("fakepkg")
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {FAKE_PACKAGE}\nVersion: {FAKE_VERSION}\nArchitecture: all\n"
        "Maintainer: Nobody <nobody@example.invalid>\nDescription: test package\n"
    )
    doc = tree / "usr" / "share" / "doc" / FAKE_PACKAGE
    doc.mkdir(parents=True)
    (doc / "hello.txt").write_text("hello\n")
    deb = tree.parent / FAKE_DEB_NAME
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


class FakeApt:
    """Answers apt-get/apt-cache commands from a local .deb; records every call."""

    def __init__(self, deb: Path) -> None:
        self.deb = deb
        self.calls: list[list[str]] = []
        self.failures: dict[str, subprocess.CompletedProcess[str]] = {}
        self._mutex = threading.Lock()

    def verbs(self) -> list[str]:
        return [verb_of(argv) for argv in self.calls]

    def fail(self, verb: str, returncode: int, stderr: str) -> None:
        self.failures[verb] = subprocess.CompletedProcess([], returncode, "", stderr)

    def __call__(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]
    ) -> subprocess.CompletedProcess[str]:
        assert Path(env["APT_CONFIG"]).is_file()
        verb = verb_of(argv)
        with self._mutex:
            self.calls.append(list(argv))
        if verb in self.failures:
            return self.failures[verb]
        stdout = ""
        if verb == "print-uris":
            stdout = (
                f"'{MIRROR}/pool/main/f/fakepkg/fakepkg_2.0-1_all.deb' {FAKE_DEB_NAME} 9 SHA256:0\n"
            )
        elif verb == "download":
            time.sleep(0.05)  # widen the window for the concurrency test
            shutil.copy(self.deb, cwd / FAKE_DEB_NAME)
        return subprocess.CompletedProcess(list(argv), 0, stdout, "")


def verb_of(argv: Sequence[str]) -> str:
    if "--print-uris" in argv:
        return "print-uris"
    return argv[-1] if argv[-1] in ("update", "gencaches") else "download"


@pytest.fixture
def fake_apt(fake_deb: Path) -> FakeApt:
    return FakeApt(fake_deb)


@pytest.fixture
def archive(fake_apt: FakeApt) -> AptArchive:
    return AptArchive(["sid"], MIRROR, runner=fake_apt)


# --- pure functions --------------------------------------------------------------------------


def test_sources_list_has_one_signed_line_per_suite() -> None:
    mirror = DebianMirror(MIRROR, Path("/k/debian.gpg"))
    assert sources_list_text(mirror, ["sid", "trixie"]) == (
        f"deb [signed-by=/k/debian.gpg] {MIRROR} sid main\n"
        f"deb [signed-by=/k/debian.gpg] {MIRROR} trixie main\n"
    )


def test_apt_config_isolates_from_the_host(tmp_path: Path) -> None:
    text = apt_config_text(tmp_path, "root")
    assert f'Dir::Etc::SourceList "{tmp_path}/sources.list";' in text
    assert f'Dir::State::Lists "{tmp_path}/lists";' in text
    assert f'Dir::State::status "{tmp_path}/status";' in text
    assert f'Dir::Cache "{tmp_path}/cache";' in text
    assert 'Dir::Etc::Main "/dev/null";' in text
    assert f'Dir::Etc::Parts "{tmp_path}/empty.d";' in text
    assert 'Acquire::Check-Valid-Until "false";' in text
    assert 'APT::Update::Error-Mode "any";' in text
    assert 'Debug::NoLocking "true";' in text
    assert 'APT::Sandbox::User "root";' in text
    assert "/etc/apt" not in text


def test_apt_environment_points_at_the_state(tmp_path: Path) -> None:
    env = apt_environment(tmp_path, {"http_proxy": "http://proxy.example:3128"})
    assert env == {
        "http_proxy": "http://proxy.example:3128",
        "APT_CONFIG": f"{tmp_path}/apt.conf",
        "LC_ALL": "C.UTF-8",
    }


def test_parse_print_uris_keeps_the_epoch() -> None:
    line = "'http://m.example/pool/x_7.7+24_amd64.deb' x_1%3a7.7+24_amd64.deb 58444 SHA256:62\n"
    assert parse_print_uris(line) == ("http://m.example/pool/x_7.7+24_amd64.deb", "1:7.7+24")


def test_parse_print_uris_rejects_other_output() -> None:
    with pytest.raises(ValueError, match="no package URI"):
        parse_print_uris("Reading package lists...\n")


def test_state_key_depends_on_sources_only() -> None:
    a = sources_list_text(DebianMirror(MIRROR, DEFAULT_KEYRING), ["sid"])
    b = sources_list_text(DebianMirror("http://other.example/debian", DEFAULT_KEYRING), ["sid"])
    assert state_key(a) == state_key(a)
    assert state_key(a) != state_key(b)


# --- state keying and freshness --------------------------------------------------------------


def test_state_dir_is_per_mirror_and_suite_set(private_cache: Path, fake_apt: FakeApt) -> None:
    one = AptArchive(["sid", "trixie"], MIRROR, runner=fake_apt)
    same = AptArchive(["trixie", "sid", "sid"], MIRROR, runner=fake_apt)
    other_suites = AptArchive(["sid"], MIRROR, runner=fake_apt)
    other_mirror = AptArchive(["sid", "trixie"], "http://other.example/debian", runner=fake_apt)
    assert one.state_dir == same.state_dir
    assert one.state_dir.parent == private_cache / "apt"
    assert len({one.state_dir, other_suites.state_dir, other_mirror.state_dir}) == 3


def test_env_override_selects_the_mirror(
    monkeypatch: pytest.MonkeyPatch, fake_apt: FakeApt
) -> None:
    monkeypatch.setenv(MIRROR_ENV, "http://env.example/debian")
    assert AptArchive(["sid"], runner=fake_apt).mirror.uri == "http://env.example/debian"


def test_first_update_writes_the_state(archive: AptArchive, fake_apt: FakeApt) -> None:
    assert archive.update() is True
    assert fake_apt.verbs() == ["update", "gencaches"]
    state = archive.state_dir
    assert (
        state / "sources.list"
    ).read_text() == f"deb [signed-by={DEFAULT_KEYRING}] {MIRROR} sid main\n"
    assert (state / "status").read_text() == ""
    assert (state / "lists" / "partial").is_dir()
    assert (state / "cache" / "archives" / "partial").is_dir()
    assert archive.is_fresh()


def test_fresh_lists_skip_apt(archive: AptArchive, fake_apt: FakeApt) -> None:
    archive.update()
    fake_apt.calls.clear()
    assert archive.update() is False
    assert fake_apt.calls == []


def test_stale_lists_are_refreshed(archive: AptArchive, fake_apt: FakeApt) -> None:
    archive.update()
    stale = time.time() - archive.max_age_seconds - 60
    os.utime(archive.state_dir / "updated", (stale, stale))
    assert not archive.is_fresh()
    assert archive.update() is True
    assert fake_apt.verbs() == ["update", "gencaches"] * 2


def test_force_updates_fresh_lists(archive: AptArchive, fake_apt: FakeApt) -> None:
    archive.update()
    assert archive.update(force=True) is True


def test_failed_update_carries_stderr_and_advice(archive: AptArchive, fake_apt: FakeApt) -> None:
    fake_apt.fail(
        "update", 100, "W: noise\nE: Failed to fetch http://mirror.example/x  Could not resolve\n"
    )
    with pytest.raises(AptError) as excinfo:
        archive.update()
    message = str(excinfo.value)
    assert "exit 100" in message
    assert "Could not resolve" in message
    assert MIRROR_ENV in message
    assert "APT_CONFIG=" in message
    assert not archive.is_fresh()  # the next call tries again
    del fake_apt.failures["update"]
    assert archive.update() is True


# --- look-ups and downloads ------------------------------------------------------------------


def test_candidate_version_updates_first(archive: AptArchive, fake_apt: FakeApt) -> None:
    assert archive.candidate_version(FAKE_PACKAGE, "sid") == FAKE_VERSION
    assert fake_apt.verbs() == ["update", "gencaches", "print-uris"]
    assert fake_apt.calls[-1][-1] == f"{FAKE_PACKAGE}/sid"


def test_unknown_package_names_the_package(archive: AptArchive, fake_apt: FakeApt) -> None:
    fake_apt.fail("print-uris", 100, "E: Unable to locate package nosuch\n")
    with pytest.raises(AptError, match="Unable to locate package nosuch") as excinfo:
        archive.candidate_version("nosuch", "sid")
    assert "nosuch exists in Debian sid" in str(excinfo.value)


def test_suite_outside_the_archive_is_refused(archive: AptArchive) -> None:
    with pytest.raises(ValueError, match="trixie"):
        archive.candidate_version(FAKE_PACKAGE, "trixie")


def test_bad_package_name_is_refused(archive: AptArchive) -> None:
    with pytest.raises(ValueError, match="package name"):
        archive.candidate_version("../etc", "sid")


def test_download_exact_version(archive: AptArchive, fake_apt: FakeApt, tmp_path: Path) -> None:
    deb = archive.download(FAKE_PACKAGE, "sid", tmp_path / "out", version=FAKE_VERSION)
    assert deb == tmp_path / "out" / FAKE_DEB_NAME
    assert deb.is_file()
    assert fake_apt.calls[-1][-1] == f"{FAKE_PACKAGE}={FAKE_VERSION}"
    assert list((tmp_path / "out").iterdir()) == [deb]  # the scratch directory is gone


# --- unpacked packages -----------------------------------------------------------------------


def test_unpacked_package_is_cached_by_version(archive: AptArchive, fake_apt: FakeApt) -> None:
    root = unpacked_package(FAKE_PACKAGE, "sid", archive=archive)
    assert root == unpacked_entry_path(FAKE_PACKAGE, "sid", FAKE_VERSION)
    assert root.name == "1%3a2.0-1"
    assert (root / "usr" / "share" / "doc" / FAKE_PACKAGE / "hello.txt").read_text() == "hello\n"
    assert fake_apt.verbs() == ["update", "gencaches", "print-uris", "download"]

    fake_apt.calls.clear()
    assert unpacked_package(FAKE_PACKAGE, "sid", archive=archive) == root
    assert fake_apt.verbs() == ["print-uris"]  # fresh lists, cached tree: no network


def test_failed_unpack_leaves_no_entry(archive: AptArchive, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.deb"
    corrupt.write_bytes(b"not an ar archive")
    archive_with_corrupt_deb = AptArchive(["sid"], MIRROR, runner=FakeApt(corrupt))
    with pytest.raises(PackageUnpackError, match="dpkg-deb -x"):
        unpacked_package(FAKE_PACKAGE, "sid", archive=archive_with_corrupt_deb)
    entry = unpacked_entry_path(FAKE_PACKAGE, "sid", FAKE_VERSION)
    assert not entry.exists()
    assert [p.name for p in entry.parent.iterdir()] == [f".{entry.name}.lock"]


def test_leftovers_of_an_interrupted_run_are_removed(archive: AptArchive) -> None:
    entry = unpacked_entry_path(FAKE_PACKAGE, "sid", FAKE_VERSION)
    leftover = entry.parent / f".{entry.name}.tmp-killed"
    (leftover / "root" / "usr").mkdir(parents=True)
    unpacked_package(FAKE_PACKAGE, "sid", archive=archive)
    assert entry.is_dir()
    assert not leftover.exists()


def test_parallel_callers_download_once(archive: AptArchive, fake_apt: FakeApt) -> None:
    results: list[Path] = []

    def fetch() -> None:
        results.append(unpacked_package(FAKE_PACKAGE, "sid", archive=archive))

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(results) == 4
    assert fake_apt.verbs().count("download") == 1
    assert fake_apt.verbs().count("update") == 1


def test_mirror_and_archive_are_exclusive(archive: AptArchive) -> None:
    with pytest.raises(ValueError, match="either"):
        unpacked_package(FAKE_PACKAGE, "sid", mirror=MIRROR, archive=archive)


# --- the real thing --------------------------------------------------------------------------


def test_real_download_and_unpack(private_cache: Path) -> None:
    """Network: the host's mirror (or $HARNESS_DEBIAN_MIRROR), real apt and dpkg-deb."""
    root = unpacked_package("hello", "trixie")
    assert root.is_relative_to(private_cache)
    assert (root / "usr" / "bin" / "hello").is_file()
    archive = AptArchive(["trixie"])
    assert archive.is_fresh()
    assert unpacked_package("hello", "trixie") == root
