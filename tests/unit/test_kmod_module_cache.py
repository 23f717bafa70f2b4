# SPDX-License-Identifier: MIT
"""The vendor module cache: its key, and when it builds (with the chroot build stood in for).

Real builds for each guest kernel are in tests/vm/test_refdev.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from harness.images.build import BuiltImage
from harness.kmod import module_cache
from harness.kmod.build_env import BuildEnv
from harness.kmod.builder import ModuleBuild, ModuleBuildError
from harness.kmod.env_manifest import EnvManifest
from harness.kmod.module_cache import (
    MODULE_FILE,
    VendorModuleError,
    VendorModuleRecord,
    build_vendor_module,
    source_digest,
    vendor_module_key,
)

IMAGE = cast(BuiltImage, object())  # only handed to the stand-in build_env_for


def quiet(_line: str) -> None:
    pass


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def source(tmp_path: Path) -> Path:
    kmod = tmp_path / "kmod"
    kmod.mkdir()
    (kmod / "Kbuild").write_text("obj-m := vfio_harness_mdev.o\n")
    (kmod / "main.c").write_text("int x;\n")
    (kmod / "hmdev.h").write_text("#define A 1\n")
    return kmod


# --- the key -------------------------------------------------------------------------------


def test_the_digest_covers_names_and_contents(source: Path, tmp_path: Path) -> None:
    before = source_digest(source)
    assert source_digest(source) == before
    copy = shutil.copytree(source, tmp_path / "elsewhere" / "other-name")
    assert source_digest(copy) == before, "where the tree lives is not part of it"

    (source / "main.c").write_text("int y;\n")
    edited = source_digest(source)
    assert edited != before
    (source / "main.c").rename(source / "core.c")
    assert source_digest(source) != edited
    (source / "core.c").rename(source / "main.c")
    assert source_digest(source) == edited
    (source / "README.md").write_text("docs\n")
    assert source_digest(source) != edited, "every file counts, not only C"


def test_the_digest_ignores_kbuild_output(source: Path) -> None:
    before = source_digest(source)
    for name in ("main.o", "vfio_harness_mdev.ko", ".main.o.cmd", "Module.symvers", "x.mod.c"):
        (source / name).write_text("built\n")
    (source / ".tmp_versions").mkdir()
    (source / ".tmp_versions" / "x").write_text("\n")
    assert source_digest(source) == before


def test_the_key_names_the_kernel_and_hashes_the_rest() -> None:
    key = vendor_module_key("src", "bookworm-6.1-abc", "gcc-12 12.2.0", "6.1.0-50-amd64")
    assert key.startswith("6.1.0-50-amd64-")
    assert key == vendor_module_key("src", "bookworm-6.1-abc", "gcc-12 12.2.0", "6.1.0-50-amd64")
    others = {
        vendor_module_key("src2", "bookworm-6.1-abc", "gcc-12 12.2.0", "6.1.0-50-amd64"),
        vendor_module_key("src", "bookworm-6.1-def", "gcc-12 12.2.0", "6.1.0-50-amd64"),
        vendor_module_key("src", "bookworm-6.1-abc", "gcc-12 12.2.1", "6.1.0-50-amd64"),
    }
    assert key not in others
    assert len(others) == 3


# --- when it builds ------------------------------------------------------------------------


class FakeBuilds:
    """Stands in for build_module: writes a .ko and reports the warnings it was told to."""

    def __init__(self) -> None:
        self.calls: list[Path] = []
        self.warnings: tuple[str, ...] = ()
        self.fail = False
        self.names: tuple[str, ...] = (MODULE_FILE,)  # the .ko files the build makes

    def __call__(self, source: Path, env: BuildEnv, **kwargs: Any) -> ModuleBuild:
        self.calls.append(source)
        assert kwargs["extra_warnings"] is True, "the vendor module is always built with W=1"
        if self.fail:
            raise ModuleBuildError("main.c:1:1: error: expected ';'")
        dest: Path = kwargs["dest"]
        kos = tuple(dest / name for name in self.names)
        for ko in kos:
            ko.write_bytes(b"\x7fELF" + (source / "main.c").read_bytes())
        (dest / "build.log").write_text("make ...\n")
        return ModuleBuild(
            modules=kos,
            warnings=self.warnings,
            modpost_warnings=(),
            log="make ...\n",
            log_path=dest / "build.log",
            kernel_release=env.kernel_release,
            seconds=0.5,
        )


def fake_env(release: str = "6.1.0-50-amd64") -> BuildEnv:
    manifest = EnvManifest(
        key=f"bookworm-{release}-0123",
        suite="bookworm",
        variant="minbase",
        packages=("gcc",),
        kernel_release=release,
        headers_dir=f"/usr/src/linux-headers-{release}",
        compiler="x86_64-linux-gnu-gcc-12",
        gcc_version="12.2.0",
        builder_version=1,
        size_bytes=1,
        build_seconds=1.0,
    )
    return BuildEnv(Path("/nonexistent"), manifest)


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> FakeBuilds:
    fake = FakeBuilds()
    monkeypatch.setattr(module_cache, "build_module", fake)
    monkeypatch.setattr(module_cache, "build_env_for", lambda image, progress: fake_env())
    return fake


def build(source: Path) -> Path:
    return build_vendor_module(IMAGE, quiet, source=source)


def test_an_unchanged_source_is_built_once(source: Path, builds: FakeBuilds) -> None:
    first = build(source)
    assert first.name == MODULE_FILE
    assert first.read_bytes() == b"\x7fELFint x;\n"
    assert build(source) == first
    assert len(builds.calls) == 1
    record = VendorModuleRecord.read(first.parent)
    assert record.kernel_release == "6.1.0-50-amd64"
    assert record.source_digest == source_digest(source)
    assert record.warnings == ()
    assert record.compiler == "x86_64-linux-gnu-gcc-12 12.2.0"


def test_an_edit_rebuilds(source: Path, builds: FakeBuilds) -> None:
    first = build(source)
    (source / "main.c").write_text("int y;\n")
    second = build(source)
    assert second != first
    assert second.read_bytes() == b"\x7fELFint y;\n"
    assert first.is_file(), "the previous build stays (another checkout may use it)"
    assert len(builds.calls) == 2


def test_a_build_with_warnings_is_an_error_every_time_but_built_once(
    source: Path, builds: FakeBuilds
) -> None:
    builds.warnings = ("main.c:1:5: warning: no previous prototype for 'x'",)
    for _ in range(2):
        with pytest.raises(VendorModuleError, match="1 warning;") as caught:
            build(source)
        assert "main.c:1:5: warning: no previous prototype" in str(caught.value)
        assert "build.log" in str(caught.value)
    assert len(builds.calls) == 1


def test_a_failed_build_is_not_cached(source: Path, builds: FakeBuilds) -> None:
    builds.fail = True
    with pytest.raises(VendorModuleError, match=r"does not build for 6\.1\.0-50-amd64.*expected"):
        build(source)
    builds.fail = False
    assert build(source).is_file()
    assert len(builds.calls) == 2


def test_only_the_newest_builds_per_kernel_are_kept(
    source: Path, builds: FakeBuilds, private_cache: Path
) -> None:
    built: Sequence[Path] = []
    for n in range(module_cache.KEEP_PER_RELEASE + 2):
        (source / "main.c").write_text(f"int v{n};\n")
        built = [*built, build(source)]
    kept = [p for p in built if p.is_file()]
    assert kept == list(built[-module_cache.KEEP_PER_RELEASE :])


def test_the_fault_injection_build_is_another_module() -> None:
    from harness.kmod.module_cache import vendor_module_key

    normal = vendor_module_key("src", "env", "gcc-12 12.2.0", "6.1.0-50-amd64")
    faulty = vendor_module_key("src", "env", "gcc-12 12.2.0", "6.1.0-50-amd64", faults=True)
    assert faulty != normal
    assert faulty.startswith("6.1.0-50-amd64-faults-")
    assert normal == vendor_module_key("src", "env", "gcc-12 12.2.0", "6.1.0-50-amd64")


def test_another_drivers_warnings_are_shown_and_its_module_loaded(
    source: Path, builds: FakeBuilds
) -> None:
    builds.names = ("mtty.ko",)
    builds.warnings = ("mtty.c:9:5: warning: no previous prototype for 'f'",)
    said: list[str] = []
    ko = build_vendor_module(IMAGE, said.append, source=source)
    assert ko.name == "mtty.ko"
    assert any("1 warning(s) with W=1" in line and "not fatal" in line for line in said), said


def test_our_module_is_chosen_among_several_and_two_others_are_refused(
    source: Path, builds: FakeBuilds
) -> None:
    builds.names = ("helper.ko", MODULE_FILE)
    assert build(source).name == MODULE_FILE
    (source / "main.c").write_text("int other;\n")
    builds.names = ("a.ko", "b.ko")
    with pytest.raises(VendorModuleError, match=r"built a\.ko, b\.ko: the harness loads one"):
        build(source)


def test_another_drivers_builds_never_evict_ours(
    source: Path, builds: FakeBuilds, private_cache: Path, tmp_path: Path
) -> None:
    ours = build_vendor_module(IMAGE, quiet)  # kmod/ itself
    other = tmp_path / "mtty"
    other.mkdir()
    builds.names = ("mtty.ko",)
    for n in range(module_cache.KEEP_PER_RELEASE + 1):
        (other / "main.c").write_text(f"int v{n};\n")
        build_vendor_module(IMAGE, quiet, source=other)
    assert ours.is_file()
    assert ours.parent.parent != module_cache.modules_root(other)
