# SPDX-License-Identifier: MIT
"""Building kernels from source, without compiling: fragments, keys, trees, and the config step
run against a fake kernel tree whose `make` and merge_config.sh only write a .config."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from harness.kernel import build as kernel_build
from harness.kernel.build import (
    KernelBuildError,
    KernelTree,
    build_key,
    compiler_command,
    configure,
    coverage_tree,
    resolve_fragments,
    user_kernel_tree,
)
from harness.kernel.fragments import ConfigMismatchError

# tinyconfig writes a base; merge_config.sh appends the fragments; olddefconfig drops every
# symbol whose name starts with UNMET (as Kconfig drops a symbol with unmet dependencies) and
# turns WANTS_M=y into m (as a tristate selected by a module would be).
FAKE_MAKEFILE = """\
tinyconfig:
\tprintf 'CONFIG_EXPERT=y\\nCONFIG_CC_VERSION_TEXT="$(CC)"\\n' > $(O)/.config
olddefconfig:
\tsed -i -e '/^CONFIG_UNMET/d' -e 's/^CONFIG_WANTS_M=y/CONFIG_WANTS_M=m/' $(O)/.config
"""
FAKE_MERGE = """\
#!/bin/sh
# merge_config.sh -m -O DIR BASE FRAGMENT...: later lines win, as in the real one
[ "$1" = -m ] && [ "$2" = -O ] || exit 2
out=$3; base=$4; shift 4
cat "$base" "$@" > "$out/.merged"
awk -F'=' '{ k=$1; sub(/^# /, "", k); sub(/ is not set$/, "", k); v[k]=$0; o[k]=NR }
     END { for (k in v) print o[k] "\\t" v[k] }' "$out/.merged" \\
  | sort -n | cut -f2- > "$out/.config"
"""


@pytest.fixture
def fake_tree(tmp_path: Path) -> KernelTree:
    tree = tmp_path / "linux"
    (tree / "scripts/kconfig").mkdir(parents=True)
    (tree / "Makefile").write_text(FAKE_MAKEFILE)
    (tree / "Kconfig").write_text("")
    merge = tree / "scripts/kconfig/merge_config.sh"
    merge.write_text(FAKE_MERGE)
    merge.chmod(merge.stat().st_mode | stat.S_IXUSR)
    return KernelTree(tree, "fake")


def fragment(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_configure_keeps_fragment_values(tmp_path: Path, fake_tree: KernelTree) -> None:
    base = fragment(tmp_path, "base.config", "# CONFIG_EXPERT is not set\nCONFIG_VFIO=y\n")
    debug = fragment(tmp_path, "debug.config", "CONFIG_KASAN=y\n")
    scratch = tmp_path / "o"
    scratch.mkdir()
    lines: list[str] = []
    dotconfig = configure(fake_tree, [base, debug], scratch, cc="gcc", progress=lines.append)
    assert "# CONFIG_EXPERT is not set" in dotconfig.splitlines()
    assert "CONFIG_KASAN=y" in dotconfig.splitlines()
    assert "all 3 fragment lines kept" in lines[-1]


def test_configure_names_dropped_and_changed_symbols(tmp_path: Path, fake_tree: KernelTree) -> None:
    base = fragment(tmp_path, "base.config", "CONFIG_VFIO=y\nCONFIG_UNMET_DEP=y\n")
    debug = fragment(tmp_path, "debug.config", "CONFIG_WANTS_M=y\n")
    scratch = tmp_path / "o"
    scratch.mkdir()
    with pytest.raises(ConfigMismatchError) as caught:
        configure(fake_tree, [base, debug], scratch, cc="gcc", progress=lambda _: None)
    message = str(caught.value)
    assert "CONFIG_UNMET_DEP: requested y (base.config:2), got absent" in message
    assert "CONFIG_WANTS_M: requested y (debug.config:1), got m" in message
    assert "CONFIG_VFIO" not in message


def test_configure_reports_a_failing_make(tmp_path: Path, fake_tree: KernelTree) -> None:
    (fake_tree.path / "Makefile").write_text("tinyconfig:\n\t@echo no compiler here; false\n")
    scratch = tmp_path / "o"
    scratch.mkdir()
    with pytest.raises(
        KernelBuildError, match=r"(?s)make tinyconfig failed \(exit 2\).*no compiler here"
    ):
        configure(fake_tree, [], scratch, cc="gcc", progress=lambda _: None)


def test_build_key_follows_the_config_only() -> None:
    tree = KernelTree(Path("/src/a"), "linux-source-6.12_6.12.117-1")
    moved = KernelTree(Path("/src/b"), "linux-source-6.12_6.12.117-1")
    key = build_key(tree, "CONFIG_A=y\n")
    assert key.startswith("linux-source-6.12_6.12.117-1-")
    assert len(key.rsplit("-", 1)[1]) == 16
    assert build_key(moved, "CONFIG_A=y\n") == key
    assert build_key(tree, "CONFIG_A=m\n") != key


def test_coverage_dirs_are_switched_on_in_a_copy_of_the_tree(
    fake_tree: KernelTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    makefile = fake_tree.path / "drivers/vfio/Makefile"
    makefile.parent.mkdir(parents=True)
    makefile.write_text("obj-y += vfio.o\n")
    copy = coverage_tree(fake_tree, ["drivers/vfio"], progress=lambda _line: None)
    assert copy.name.startswith("fake+coverage-") and copy.path != fake_tree.path
    text = (copy.path / "drivers/vfio/Makefile").read_text()
    assert text.startswith("obj-y += vfio.o\n") and "GCOV_PROFILE := y" in text
    assert "KCOV_INSTRUMENT := y" in text
    assert makefile.read_text() == "obj-y += vfio.o\n"  # the shared tree is left as it was
    assert (copy.path / "Makefile").stat().st_ino == (fake_tree.path / "Makefile").stat().st_ino
    assert coverage_tree(fake_tree, ["drivers/vfio"], progress=lambda _line: None) == copy
    assert coverage_tree(fake_tree, [], progress=lambda _line: None) == fake_tree
    with pytest.raises(KernelBuildError, match="no drivers/none/Makefile"):
        coverage_tree(fake_tree, ["drivers/none"], progress=lambda _line: None)


def test_resolve_fragments_by_name_and_path(tmp_path: Path) -> None:
    own = fragment(tmp_path, "mine.config", "CONFIG_A=y\n")
    paths = resolve_fragments(["base", "debug.config", own])
    assert [p.name for p in paths] == ["base.config", "debug.config", "mine.config"]
    assert paths[0].parent == kernel_build.fragment_dir().resolve()
    with pytest.raises(KernelBuildError, match="nosuch"):
        resolve_fragments(["nosuch"])


def test_user_tree_must_be_clean(tmp_path: Path, fake_tree: KernelTree) -> None:
    tree = user_kernel_tree(fake_tree.path)
    assert tree.path == fake_tree.path
    assert tree.name.startswith("linux-")
    (fake_tree.path / ".config").write_text("CONFIG_A=y\n")
    with pytest.raises(KernelBuildError, match="make mrproper"):
        user_kernel_tree(fake_tree.path)
    with pytest.raises(KernelBuildError, match="not a kernel source tree"):
        user_kernel_tree(tmp_path)


def test_compiler_command_uses_ccache_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert compiler_command("gcc-12") == "ccache gcc-12"
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert compiler_command() == "gcc"


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        ("  CC      drivers/vfio/vfio_main.o\n", True),
        ("  CC [M]  samples/vfio-mdev/mtty.o\n", True),
        ("  AS      arch/x86/entry/entry_64.o\n", True),
        ("  LD      vmlinux.o\n", False),
        ("make[1]: Entering directory '/x'\n", False),
    ],
)
def test_object_lines(line: str, counted: bool) -> None:
    match = kernel_build._OBJECT_LINE.match(line)
    assert (match is not None and not match[1].startswith("LD")) == counted


def test_superseded_builds_keep_the_newest_per_source(tmp_path: Path) -> None:
    def finished(name: str, mtime: int) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        record = directory / kernel_build.RECORD_FILE
        record.write_text("{}")
        os.utime(record, (mtime, mtime))
        return directory

    old = finished("linux-source-6.12_1-" + "a" * 16, 100)
    finished("linux-source-6.12_1-" + "b" * 16, 300)
    finished("linux-source-6.12_1-" + "c" * 16, 200)
    finished("linux-source-6.12_2-" + "d" * 16, 50)  # another source version: not ours
    (tmp_path / ("linux-source-6.12_1-" + "e" * 16)).mkdir()  # unfinished: left alone
    assert kernel_build.superseded_builds(tmp_path, "linux-source-6.12_1", keep=2) == [old]


def test_debian_tree_is_extracted_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    unpacked = tmp_path / "unpacked" / "6.12.117-1"
    (unpacked / "usr/src").mkdir(parents=True)
    content = tmp_path / "content" / "linux-source-6.12"
    content.mkdir(parents=True)
    (content / "Makefile").write_text("all:\n")
    (content / "Kconfig").write_text("")
    with tarfile.open(unpacked / "usr/src/linux-source-6.12.tar.xz", "w:xz") as tar:
        tar.add(content, arcname="linux-source-6.12")
    fetched: list[tuple[str, str]] = []

    def fake_unpacked(package: str, suite: str) -> Path:
        fetched.append((package, suite))
        return unpacked

    monkeypatch.setattr(kernel_build, "unpacked_package", fake_unpacked)
    lines: list[str] = []
    tree = kernel_build.debian_kernel_tree(progress=lines.append)
    assert fetched == [("linux-source-6.12", "trixie")]
    assert tree.name == "linux-source-6.12_6.12.117-1"
    assert tree.path == tmp_path / "cache/kernel-src/linux-source-6.12_6.12.117-1/linux-source-6.12"
    assert (tree.path / "Makefile").read_text() == "all:\n"
    assert any("extracted" in line for line in lines)
    lines.clear()
    assert kernel_build.debian_kernel_tree(progress=lines.append) == tree
    assert lines == []  # the second time nothing is extracted
    # Passed by path (run --kernel-tree), it keeps its name: same config, same build directory.
    assert user_kernel_tree(tree.path) == tree
