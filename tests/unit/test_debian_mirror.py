# SPDX-License-Identifier: MIT
"""Finding the Debian mirror in fake apt configuration trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.debian.mirror import (
    DEFAULT_KEYRING,
    MIRROR_ENV,
    DebianMirror,
    MirrorNotFoundError,
    debian_mirror,
    find_debian_mirror,
    host_codename,
    parse_deb822_sources,
    parse_one_line_sources,
)

MIRROR = "http://mirror.example/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

DEB822_HOST_LIKE = f"""\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: {KEYRING}

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: {KEYRING}
"""


@pytest.fixture
def apt_root(tmp_path: Path) -> Path:
    root = tmp_path / "etc-apt"
    (root / "sources.list.d").mkdir(parents=True)
    return root


@pytest.fixture
def os_release(tmp_path: Path) -> Path:
    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    return path


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_one_line_entry_with_options_and_comment() -> None:
    text = f"# comment\ndeb [ arch=amd64 signed-by={KEYRING} ] {MIRROR}/ trixie main contrib # x\n"
    [source] = parse_one_line_sources(text, "f.list")
    assert source.types == ("deb",)
    assert source.uris == (f"{MIRROR}/",)
    assert source.suites == ("trixie",)
    assert source.components == ("main", "contrib")
    assert source.signed_by == KEYRING
    assert source.origin == "f.list:2"


def test_deb822_multiple_uris_suites_and_disabled_stanza() -> None:
    text = (
        "Types: deb deb-src\nURIs: http://a.example/debian http://b.example/debian\n"
        "Suites: trixie sid\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://c.example/debian\nSuites: sid\nComponents: main\n"
    )
    first, second = parse_deb822_sources(text)
    assert first.types == ("deb", "deb-src")
    assert first.uris == ("http://a.example/debian", "http://b.example/debian")
    assert first.suites == ("trixie", "sid")
    assert first.enabled
    assert not second.enabled


def test_deb822_inline_key_is_not_a_keyring_path(apt_root: Path, os_release: Path) -> None:
    write(
        apt_root / "sources.list.d" / "debian.sources",
        f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm\nComponents: main\n"
        "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"
        " -----END PGP PUBLIC KEY BLOCK-----\n",
    )
    assert find_debian_mirror(apt_root, os_release).keyring == DEFAULT_KEYRING


def test_host_like_deb822(apt_root: Path, os_release: Path) -> None:
    write(apt_root / "sources.list.d" / "debian.sources", DEB822_HOST_LIKE)
    assert find_debian_mirror(apt_root, os_release) == DebianMirror(MIRROR, Path(KEYRING))


def test_one_line_sources_list(apt_root: Path, os_release: Path) -> None:
    write(
        apt_root / "sources.list", f"deb-src {MIRROR} bookworm main\ndeb {MIRROR}/ bookworm main\n"
    )
    assert find_debian_mirror(apt_root, os_release) == DebianMirror(MIRROR, DEFAULT_KEYRING)


def test_security_only_entries_are_ignored(apt_root: Path, os_release: Path) -> None:
    write(
        apt_root / "sources.list",
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb http://security.example/debian-security buster/updates main\n",
    )
    write(apt_root / "sources.list.d" / "zz.list", f"deb {MIRROR} bookworm main\n")
    assert find_debian_mirror(apt_root, os_release).uri == MIRROR


def test_third_party_entries_are_ignored(apt_root: Path, os_release: Path) -> None:
    parts = apt_root / "sources.list.d"
    write(
        parts / "a-cloud.list", "deb [signed-by=/k.gpg] https://cloud.example/apt cloud-sdk main\n"
    )
    write(
        parts / "b-node.sources",
        "Types: deb\nURIs: https://node.example/deb\nSuites: nodistro\nComponents: main\n",
    )
    write(parts / "c-docker.list", "deb https://docker.example/linux/debian bookworm stable\n")
    write(parts / "d-debian.sources", DEB822_HOST_LIKE)
    assert find_debian_mirror(apt_root, os_release).uri == MIRROR


def test_files_apt_would_ignore_are_ignored(apt_root: Path, os_release: Path) -> None:
    parts = apt_root / "sources.list.d"
    write(parts / "old.list.disabled", "deb http://old.example/debian bookworm main\n")
    write(parts / "debian.sources", DEB822_HOST_LIKE)
    assert find_debian_mirror(apt_root, os_release).uri == MIRROR


def test_plain_suite_other_than_host_codename(apt_root: Path, os_release: Path) -> None:
    write(apt_root / "sources.list", f"deb {MIRROR} unstable main\n")
    assert find_debian_mirror(apt_root, os_release).uri == MIRROR


def test_host_codename_counts_even_if_unknown(apt_root: Path, tmp_path: Path) -> None:
    release = tmp_path / "os-release-future"
    release.write_text('VERSION_CODENAME="nextone"\n')
    write(apt_root / "sources.list", f"deb {MIRROR} nextone main\n")
    assert host_codename(release) == "nextone"
    assert find_debian_mirror(apt_root, release).uri == MIRROR


def test_without_component_main_is_ignored(apt_root: Path, os_release: Path) -> None:
    write(apt_root / "sources.list", f"deb {MIRROR} bookworm contrib\n")
    with pytest.raises(MirrorNotFoundError):
        find_debian_mirror(apt_root, os_release)


def test_nothing_found_says_what_to_set(apt_root: Path, os_release: Path) -> None:
    write(apt_root / "sources.list.d" / "x.list", "deb https://cloud.example/apt cloud-sdk main\n")
    with pytest.raises(MirrorNotFoundError, match=MIRROR_ENV) as excinfo:
        debian_mirror(apt_root=apt_root, os_release=os_release)
    assert "bookworm" in str(excinfo.value)


def test_missing_apt_root_is_not_found(tmp_path: Path, os_release: Path) -> None:
    with pytest.raises(MirrorNotFoundError):
        find_debian_mirror(tmp_path / "nowhere", os_release)


def test_env_override_wins(
    apt_root: Path, os_release: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(apt_root / "sources.list.d" / "debian.sources", DEB822_HOST_LIKE)
    monkeypatch.setenv(MIRROR_ENV, "http://other.example/debian/")
    found = debian_mirror(apt_root=apt_root, os_release=os_release)
    assert found == DebianMirror("http://other.example/debian", DEFAULT_KEYRING)


def test_argument_beats_env(apt_root: Path, os_release: Path) -> None:
    found = debian_mirror(
        "http://arg.example/debian",
        apt_root=apt_root,
        os_release=os_release,
        environ={MIRROR_ENV: "http://env.example/debian"},
    )
    assert found.uri == "http://arg.example/debian"


def test_empty_env_is_no_override(apt_root: Path, os_release: Path) -> None:
    write(apt_root / "sources.list", f"deb {MIRROR} bookworm main\n")
    found = debian_mirror(apt_root=apt_root, os_release=os_release, environ={MIRROR_ENV: " "})
    assert found.uri == MIRROR
