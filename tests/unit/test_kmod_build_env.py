# SPDX-License-Identifier: MIT
"""The module build environment without network or chroot: key, command line, cache, errors.

Real chroots are built in tests/vm/test_module_build.py.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from harness.debian import DebianMirror
from harness.images.build import BuiltImage
from harness.images.manifest import ImageManifest
from harness.images.recipe import BuildEnvSpec, Recipe, load_recipe
from harness.images.rootfs import RootfsError
from harness.kmod import build_env
from harness.kmod.build_env import (
    BuildEnvError,
    EnvRequest,
    build_env_for,
    build_env_key,
    cached_build_env,
    env_packages,
    env_request,
    headers_gone_message,
    headers_package,
    kernel_compiler,
    missing_from_archive,
    mmdebstrap_env_argv,
)
from harness.kmod.env_manifest import EnvManifest, EnvManifestError

RECIPE_DIR = Path(__file__).resolve().parents[2] / "vm_images"
MIRROR = DebianMirror(uri="http://mirror.invalid/debian", keyring=Path("/k/debian.gpg"))
SID_RELEASE = "7.2.13+deb14-amd64"


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


def fake_image(name: str = "sid", release: str = SID_RELEASE) -> BuiltImage:
    manifest = ImageManifest(
        name=name,
        suite=name,
        key=f"{name}-0123",
        builder_version=1,
        kernel_package="linux-image-amd64",
        kernel_release=release,
        host_key="ssh-ed25519 AAAA",
        initrd_modules=("ext4",),
        sizes={},
        rootfs_capacity=0,
        build_seconds=1.0,
    )
    return BuiltImage(Path("/nonexistent/images") / manifest.key, manifest)


def sid_recipe() -> Recipe:
    return load_recipe(RECIPE_DIR / "sid.toml")


def fake_manifest(request: EnvRequest) -> EnvManifest:
    return EnvManifest(
        key=request.key,
        suite=request.suite,
        variant=request.variant,
        packages=request.packages,
        kernel_release=request.release,
        headers_dir=request.headers_dir,
        compiler="x86_64-linux-gnu-gcc-16",
        gcc_version="16.2.0",
        builder_version=build_env.BUILD_ENV_VERSION,
        size_bytes=1,
        build_seconds=0.1,
    )


# --- packages and key ----------------------------------------------------------------------


def test_the_exact_headers_of_the_image_kernel_are_always_installed() -> None:
    assert env_packages(["gcc", "make"], SID_RELEASE) == (
        "gcc",
        "make",
        f"linux-headers-{SID_RELEASE}",
    )
    # Listed by the recipe too: installed once, last.
    assert env_packages([f"linux-headers-{SID_RELEASE}", "gcc"], SID_RELEASE) == (
        "gcc",
        f"linux-headers-{SID_RELEASE}",
    )


@pytest.mark.parametrize("release", ["", "../etc", "6.1 x", "6.1.0-50-AMD64", "-rc1"])
def test_a_release_that_is_not_debian_s_is_refused(release: str) -> None:
    with pytest.raises(BuildEnvError, match="not a Debian kernel release"):
        headers_package(release)


def test_key_is_stable_and_names_suite_and_release() -> None:
    key = build_env_key("sid", "minbase", ("gcc", "make"), SID_RELEASE)
    assert key == build_env_key("sid", "minbase", ["gcc", "make"], SID_RELEASE)
    assert key.startswith(f"sid-{SID_RELEASE}-")
    assert len(key.rsplit("-", 1)[1]) == 16


def test_key_changes_with_every_input(monkeypatch: pytest.MonkeyPatch) -> None:
    base = ("sid", "minbase", ("gcc", "make"), SID_RELEASE)
    keys = {
        build_env_key(*base),
        build_env_key("trixie", *base[1:]),
        build_env_key("sid", "buildd", *base[2:]),
        build_env_key("sid", "minbase", ("make", "gcc"), SID_RELEASE),  # order counts
        build_env_key("sid", "minbase", ("gcc", "make", "perl"), SID_RELEASE),
        build_env_key(*base[:3], "7.2.14+deb14-amd64"),
    }
    monkeypatch.setattr(build_env, "BUILD_ENV_VERSION", build_env.BUILD_ENV_VERSION + 1)
    keys.add(build_env_key(*base))
    assert len(keys) == 7


def test_request_takes_suite_and_release_from_the_image_and_packages_from_the_recipe() -> None:
    recipe = dataclasses.replace(
        sid_recipe(), build_env=BuildEnvSpec(packages=("gcc", "make"), variant="minbase")
    )
    request = env_request(fake_image(), recipe)
    assert (request.image_name, request.suite, request.release) == ("sid", "sid", SID_RELEASE)
    assert request.packages == ("gcc", "make", f"linux-headers-{SID_RELEASE}")
    assert request.headers_dir == f"/usr/src/linux-headers-{SID_RELEASE}"
    assert request.key == build_env_key("sid", "minbase", request.packages, SID_RELEASE)


# --- mmdebstrap command line -----------------------------------------------------------------


def test_mmdebstrap_argv() -> None:
    packages = ("gcc", "make", f"linux-headers-{SID_RELEASE}")
    argv = mmdebstrap_env_argv("sid", "minbase", packages, MIRROR, Path("/c/tree"))
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    assert f"--include=gcc,make,linux-headers-{SID_RELEASE}" in argv
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in argv  # sid's expired Release
    assert "--keyring=/k/debian.gpg" in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert "--dpkgopt=path-exclude=/usr/lib/modules/*/kernel/*" in argv  # trixie's image dep
    assert argv[-3:] == [
        "sid",
        "/c/tree",
        "deb [signed-by=/k/debian.gpg] http://mirror.invalid/debian sid main",
    ]


# --- failures explained --------------------------------------------------------------------

APT_NOT_FOUND = (
    "E: Unable to locate package linux-headers-7.2.13+deb14-amd64\n",
    "E: Package 'linux-headers-7.2.13+deb14-amd64' has no installation candidate\n",
    "E: Couldn't find any package by glob 'linux-headers-7.2.13+deb14-amd64'\n",
)


@pytest.mark.parametrize("log", APT_NOT_FOUND)
def test_apt_saying_the_headers_are_gone_is_recognised(log: str) -> None:
    assert missing_from_archive(
        f"I: running apt-get\n{log}E: exit 100\n", headers_package(SID_RELEASE)
    )
    assert not missing_from_archive(log, "linux-headers-7.2.13+deb14")  # no prefix matches
    assert not missing_from_archive("E: Failed to fetch http://x/y 404\n", "gcc")


def test_headers_gone_message_says_to_rebuild_the_image() -> None:
    message = headers_gone_message("sid", SID_RELEASE, "sid", MIRROR.uri)
    assert f"linux-headers-{SID_RELEASE}" in message
    assert "no longer in Debian sid" in message
    assert "`vfio-harness images build --rebuild sid`" in message


def test_missing_headers_fail_with_the_rebuild_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_env, "debian_mirror", lambda _mirror: MIRROR)

    def apt_cannot_find(argv: list[str], log: Path, *_args: object) -> None:
        log.write_text(APT_NOT_FOUND[0])
        raise RootfsError("mmdebstrap failed (exit 1)")

    monkeypatch.setattr(build_env, "run_logged", apt_cannot_find)
    with pytest.raises(BuildEnvError) as caught:
        build_env_for(fake_image(), recipe=sid_recipe(), progress=lambda _line: None)
    message = str(caught.value)
    assert "vfio-harness images build --rebuild sid" in message
    assert "Full log: " in message
    root = build_env.envs_root()
    assert not [p for p in root.iterdir() if ".tmp-" in p.name], "scratch directory left behind"
    assert list(root.glob("*.failed.log"))


def test_kernel_compiler_comes_from_the_config() -> None:
    config = (
        'CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0"\n'
        "CONFIG_GCC_VERSION=160200\n"
    )
    assert kernel_compiler(config) == "x86_64-linux-gnu-gcc-16"
    assert kernel_compiler('CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14) 12.2.0"') == "gcc-12"
    assert kernel_compiler("CONFIG_GCC_VERSION=120200\n") is None


def test_building_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BuildEnvError, match=r"needs root .*build_module_host"):
        build_env_for(fake_image(), recipe=sid_recipe())


# --- the cache -----------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = fake_manifest(env_request(fake_image(), sid_recipe()))
    manifest.write(tmp_path)
    assert EnvManifest.read(tmp_path) == manifest


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{", "not JSON"), ('{"format": 99}', "not a format-1"), ('{"format": 1}', "fields missing")],
)
def test_a_bad_manifest_says_to_delete_the_environment(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(EnvManifestError, match=f"{problem}.*delete {tmp_path}"):
        EnvManifest.read(tmp_path)


def test_a_cached_environment_is_reused_without_root_or_mirror(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request = env_request(fake_image(), sid_recipe())
    directory = build_env.envs_root() / request.key
    (directory / "root").mkdir(parents=True)
    fake_manifest(request).write(directory)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # would refuse to build

    def no_mirror(_mirror: str | None) -> DebianMirror:
        raise AssertionError("a warm lookup must not look for a mirror")

    monkeypatch.setattr(build_env, "debian_mirror", no_mirror)
    found = build_env_for(fake_image(), recipe=sid_recipe())
    assert found.directory == directory
    assert found.root == directory / "root"
    assert found.headers_dir == f"/usr/src/linux-headers-{SID_RELEASE}"
    assert (found.kernel_release, found.gcc_version) == (SID_RELEASE, "16.2.0")
    assert cached_build_env(request.key) == found


def test_cold_build_lands_by_rename_and_clears_leftovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(build_env, "debian_mirror", lambda _mirror: MIRROR)
    request = env_request(fake_image(), sid_recipe())
    root = build_env.envs_root()
    leftover = root / f".{request.key}.tmp-killed"
    (leftover / "root").mkdir(parents=True)
    calls: list[Path] = []

    def bootstrap(
        req: EnvRequest, mirror: DebianMirror, scratch: Path, _progress: object
    ) -> EnvManifest:
        assert mirror == MIRROR
        calls.append(scratch)
        (scratch / "root").mkdir()
        manifest = fake_manifest(req)
        manifest.write(scratch)
        return manifest

    monkeypatch.setattr(build_env, "_bootstrap", bootstrap)
    lines: list[str] = []
    env = build_env_for(fake_image(), recipe=sid_recipe(), progress=lines.append)
    assert env.directory == root / request.key
    assert (env.directory / "manifest.json").is_file()
    assert oct(env.directory.stat().st_mode & 0o777) == "0o755"
    assert not leftover.exists()
    assert build_env_for(fake_image(), recipe=sid_recipe()) == env  # warm: no second build
    assert len(calls) == 1
    build_env_for(fake_image(), recipe=sid_recipe(), rebuild=True, progress=lines.append)
    assert len(calls) == 2
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [request.key]
