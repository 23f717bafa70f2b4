# SPDX-License-Identifier: MIT
"""Module builds without a chroot: command lines, kbuild output, a stand-in kernel tree, .modinfo.

Real builds against each guest kernel are in tests/vm/test_module_build.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.kmod.build_env import BuildEnv
from harness.kmod.builder import (
    GCOV_COMPILED_IN,
    GCOV_NOTES_DIR,
    ModuleBuildError,
    build_module,
    build_module_host,
    chroot_environment,
    host_environment,
    kernel_release_of,
    make_argv,
    namespaced_chroot_argv,
)
from harness.kmod.env_manifest import EnvManifest
from harness.kmod.make_output import failure_lines, parse_make_output
from harness.kmod.modinfo import ModinfoError, elf_sections, module_info

MODULE_DIR = "/build/hello-abc123"


def quiet(_line: str) -> None:
    pass


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache))
    return cache


# --- command lines -------------------------------------------------------------------------


def test_make_argv() -> None:
    assert make_argv("/usr/src/linux-headers-6.1.0-50-amd64", MODULE_DIR, jobs=2) == [
        "make",
        "-j2",
        "-C",
        "/usr/src/linux-headers-6.1.0-50-amd64",
        f"M={MODULE_DIR}",
        "modules",
    ]
    argv = make_argv("/k", "/m", extra_warnings=True, extra_make_args=["C=1", "V=1"], jobs=1)
    assert argv[-4:] == ["W=1", "C=1", "V=1", "modules"]


def test_the_chroot_runs_in_namespaces_that_die_with_make() -> None:
    argv = namespaced_chroot_argv(Path("/cache/env/root"), ["make", "modules"])
    assert argv[0] == "unshare"
    # Private mounts: the proc mount never reaches the host's mount table.
    assert argv[1:4] == ["--mount", "--propagation", "private"]
    # A PID namespace whose init is killed with unshare: no process outlives the build.
    assert {"--pid", "--fork", "--kill-child"} <= set(argv)
    assert "--mount-proc=/cache/env/root/proc" in argv
    assert argv[-4:] == ["chroot", "/cache/env/root", "make", "modules"]


def test_no_host_environment_reaches_the_chroot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "clang")
    monkeypatch.setenv("MAKEFLAGS", "-j64")
    env = chroot_environment()
    assert set(env) == {"PATH", "LC_ALL", "HOME"}
    assert env["LC_ALL"] == "C"  # gcc's diagnostics in ASCII, as the parser expects


def test_a_fault_switch_in_the_environment_does_not_reach_a_host_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HMDEV_FAULTS", "1")
    monkeypatch.setenv("CC", "gcc-12")  # a kernel tree's own settings do pass
    env = host_environment()
    assert "HMDEV_FAULTS" not in env
    assert (env["CC"], env["LC_ALL"]) == ("gcc-12", "C")


def kmod_cflags(*make_vars: str, environment: dict[str, str] | None = None) -> str:
    """ccflags-y as kmod/Kbuild sets it, evaluated by make without a kernel tree."""
    kbuild = Path(__file__).parents[2] / "kmod" / "Kbuild"
    show = "show-ccflags: ; @echo '$(ccflags-y)'"
    argv = ["make", "-s", "-f", str(kbuild), f"--eval={show}", "show-ccflags", *make_vars]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=environment)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    ("make_vars", "fault_build"),
    [
        ((), False),
        (("HMDEV_FAULTS=1",), True),
        (("HMDEV_FAULTS=0",), False),
        (("HMDEV_FAULTS=",), False),
        (("HMDEV_FAULTS=yes",), False),
    ],
)
def test_only_hmdev_faults_1_makes_the_test_build(
    make_vars: tuple[str, ...], fault_build: bool
) -> None:
    assert ("-DHMDEV_FAULTS" in kmod_cflags(*make_vars)) is fault_build


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_hmdev_faults_0_in_the_environment_builds_the_normal_module() -> None:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HMDEV_FAULTS": "0"}
    assert "-DHMDEV_FAULTS" not in kmod_cflags(environment=environment)


# --- kbuild output -------------------------------------------------------------------------

WARNINGS_LOG = f"""\
make: Entering directory '/usr/src/linux-headers-6.1.0-50-amd64'
  CC [M]  {MODULE_DIR}/hello.o
{MODULE_DIR}/hello.c: In function 'helper':
{MODULE_DIR}/hello.c:16:24: warning: unused variable 'unused' [-Wunused-variable]
   16 | int helper(void) {{ int unused; return 0; }}
      |                        ^~~~~~
{MODULE_DIR}/hello.c:16:5: warning: no previous prototype for 'helper' [-Wmissing-prototypes]
{MODULE_DIR}/hello.h:3:1: warning: 'inline' is not at beginning of declaration
  CC [M]  {MODULE_DIR}/other.o
{MODULE_DIR}/hello.h:3:1: warning: 'inline' is not at beginning of declaration
cc1: warning: command-line option '-Wfoo' is valid for C++ but not for C
  MODPOST {MODULE_DIR}/Module.symvers
WARNING: modpost: missing MODULE_DESCRIPTION() in {MODULE_DIR}/hello.o
  LD [M]  {MODULE_DIR}/hello.ko
make: Leaving directory '/usr/src/linux-headers-6.1.0-50-amd64'
"""


def test_warnings_are_parsed_relative_to_the_module_and_deduplicated() -> None:
    parsed = parse_make_output(WARNINGS_LOG, MODULE_DIR)
    assert parsed.warnings == (
        "hello.c:16:24: warning: unused variable 'unused' [-Wunused-variable]",
        "hello.c:16:5: warning: no previous prototype for 'helper' [-Wmissing-prototypes]",
        "hello.h:3:1: warning: 'inline' is not at beginning of declaration",
        "cc1: warning: command-line option '-Wfoo' is valid for C++ but not for C",
    )
    assert parsed.modpost_warnings == ("WARNING: modpost: missing MODULE_DESCRIPTION() in hello.o",)
    assert parsed.errors == ()


def test_newer_kbuild_prints_relative_paths_already() -> None:
    log = "  CC [M]  hello.o\nhello.c:9:12: warning: 'f' defined but not used [-Wunused-function]\n"
    assert parse_make_output(log, MODULE_DIR).warnings == (
        "hello.c:9:12: warning: 'f' defined but not used [-Wunused-function]",
    )


def test_a_clean_build_has_no_warnings() -> None:
    log = "  CC [M]  hello.o\n  MODPOST Module.symvers\n  LD [M]  hello.ko\n"
    parsed = parse_make_output(log, MODULE_DIR)
    assert (parsed.warnings, parsed.modpost_warnings, parsed.errors) == ((), (), ())


ERROR_LOG = f"""\
  CC [M]  {MODULE_DIR}/hello.o
{MODULE_DIR}/hello.c: In function 'hello_init':
{MODULE_DIR}/hello.c:19:16: error: 'undefined_thing' undeclared (first use in this function)
   19 |         return undefined_thing;
{MODULE_DIR}/hello.c:19:16: note: each undeclared identifier is reported only once
{MODULE_DIR}/hello.c:20:1: error: control reaches end of non-void function [-Werror=return-type]
{MODULE_DIR}/missing.c:1:10: fatal error: nothere.h: No such file or directory
cc1: some warnings being treated as errors
make[1]: *** [/usr/src/linux-headers-6.1.0-50-common/scripts/Makefile.build:255: x] Error 1
ERROR: modpost: "undefined_symbol" [{MODULE_DIR}/hello.ko] undefined!
"""


def test_errors_are_the_compiler_s_and_modpost_s_lines() -> None:
    assert failure_lines(ERROR_LOG, MODULE_DIR) == [
        "hello.c:19:16: error: 'undefined_thing' undeclared (first use in this function)",
        "hello.c:20:1: error: control reaches end of non-void function [-Werror=return-type]",
        "missing.c:1:10: fatal error: nothere.h: No such file or directory",
        'ERROR: modpost: "undefined_symbol" [hello.ko] undefined!',
    ]


def test_without_compiler_errors_the_failing_tool_s_complaint_is_shown() -> None:
    log = f"""\
make: Entering directory '/usr/src/linux-headers-6.12.117+deb13-amd64'
  CC [M]  {MODULE_DIR}/hello.o
Can't locate Pod/Usage.pm in @INC (you may need to install the Pod::Usage module)
make[2]: *** [/usr/src/linux-headers-6.12.117+deb13-common/scripts/Makefile.build:234: x] Error 2
make: Leaving directory '/usr/src/linux-headers-6.12.117+deb13-amd64'
"""
    assert failure_lines(log, MODULE_DIR) == [
        "Can't locate Pod/Usage.pm in @INC (you may need to install the Pod::Usage module)",
        "make[2]: *** [/usr/src/linux-headers-6.12.117+deb13-common/scripts/Makefile.build:234: "
        "x] Error 2",
    ]


# --- building against a kernel tree on the host (a stand-in that answers like kbuild) -------

FAKE_KBUILD = """\
# Answers `make -C <here> M=<dir> modules` the way kbuild would, without a compiler.
modules:
\t@echo "  CC [M]  $(M)/hello.o"
ifdef FAIL
\t@echo "$(M)/hello.c:7:1: error: expected ';' before '}' token"
\t@echo "make[2]: *** [scripts/Makefile.build:250: $(M)/hello.o] Error 1"
\t@exit 2
endif
\t@echo "$(M)/hello.c:3:5: warning: unused variable 'x' [-Wunused-variable]"
\t@echo "W=$(W)" > $(M)/flags
ifndef NOKO
\t@cp $(M)/hello.c $(M)/hello.ko
endif
ifeq ($(GCOV_PROFILE),y)
\t@echo notes > $(M)/hello.gcno
endif
"""


@pytest.fixture
def kernel_tree(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed on this host (host builds need it)")
    tree = tmp_path / "linux"
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text("6.18.0-custom\n")
    (tree / "Makefile").write_text(FAKE_KBUILD)
    return tree


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "my module"  # a space: the staged copy must still be a valid M=
    src.mkdir()
    (src / "Kbuild").write_text("obj-m := hello.o\n")
    (src / "hello.c").write_text("int x;\n")
    (src / "stale.ko").write_text("from an earlier build by hand\n")
    return src


def test_host_build_copies_the_module_out_with_its_warnings_and_log(
    kernel_tree: Path, source: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    built = build_module_host(
        source, kernel_tree, dest=tmp_path / "out", extra_warnings=True, progress=lines.append
    )
    assert built.modules == (tmp_path / "out/hello.ko",)  # not the stale one
    assert built.modules[0].read_text() == "int x;\n"
    assert built.warnings == ("hello.c:3:5: warning: unused variable 'x' [-Wunused-variable]",)
    assert built.kernel_release == "6.18.0-custom"
    assert built.log_path == tmp_path / "out/build.log"
    assert "W=1" in built.log_path.read_text().splitlines()[0]
    assert "hello.c:3:5: warning" in built.log
    assert lines[-1].startswith("module my_module for 6.18.0-custom: make ... ")
    assert "1 warning," in lines[-1]


def test_a_build_for_gcov_keeps_its_notes_and_where_it_was_compiled(
    kernel_tree: Path, source: Path, tmp_path: Path
) -> None:
    build_module_host(
        source, kernel_tree, dest=tmp_path / "out", make_env={"GCOV_PROFILE": "y"},
        progress=quiet,
    )  # fmt: skip
    notes = tmp_path / "out" / GCOV_NOTES_DIR
    assert (notes / "hello.gcno").read_text() == "notes\n"
    compiled_in = (notes / GCOV_COMPILED_IN).read_text().strip()
    assert Path(compiled_in).name.startswith("my_module-")  # the staged copy, now gone
    build_module_host(source, kernel_tree, dest=tmp_path / "plain", progress=quiet)
    assert not (tmp_path / "plain" / GCOV_NOTES_DIR).exists()


def test_a_failed_build_raises_with_the_compiler_s_error_lines(
    kernel_tree: Path, source: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModuleBuildError) as caught:
        build_module_host(
            source, kernel_tree, dest=tmp_path / "out", extra_make_args=["FAIL=1"], progress=quiet
        )
    message = str(caught.value)
    assert message.startswith("building module my_module for 6.18.0-custom failed (make exit 2)")
    assert "  | hello.c:7:1: error: expected ';' before '}' token" in message
    assert f"Full log: {tmp_path / 'out/build.log'}" in message
    assert "Traceback" not in message
    assert caught.value.errors == ("hello.c:7:1: error: expected ';' before '}' token",)
    assert "CC [M]" in caught.value.log


def test_a_build_that_makes_no_module_says_so(
    kernel_tree: Path, source: Path, tmp_path: Path
) -> None:
    with pytest.raises(ModuleBuildError, match=r"made no \.ko: does the Kbuild file set obj-m"):
        build_module_host(
            source, kernel_tree, dest=tmp_path / "out", extra_make_args=["NOKO=1"], progress=quiet
        )


def test_without_dest_the_module_lands_in_the_cache(
    kernel_tree: Path, source: Path, private_cache: Path
) -> None:
    built = build_module_host(source, kernel_tree, progress=quiet)
    assert built.modules[0].parent.parent == private_cache / "modules"
    assert built.modules[0].parent.name.startswith("my_module-6.18.0-custom-")


def test_an_unprepared_kernel_tree_or_a_non_module_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModuleBuildError, match="run `make modules_prepare`"):
        kernel_release_of(tmp_path)
    with pytest.raises(ModuleBuildError, match="has no Kbuild or Makefile"):
        build_module_host(tmp_path, tmp_path)


# --- .modinfo ------------------------------------------------------------------------------

MODINFO_C = r"""
static const char modinfo[] __attribute__((section(".modinfo"), used, aligned(1))) =
    "license=GPL\0vermagic=6.1.0-50-amd64 SMP preempt mod_unload modversions \0"
    "parm=answer:printed on load\0parmtype=answer:int\0parm=other:x";
int value;
"""


def test_modinfo_of_an_object_gcc_made(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is missing: run `vfio-harness setup --profile unit`", pytrace=False)
    (tmp_path / "m.c").write_text(MODINFO_C)
    subprocess.run(["gcc", "-c", "-o", "m.ko", "m.c"], cwd=tmp_path, check=True)
    info = module_info(tmp_path / "m.ko")
    assert info.kernel_release == "6.1.0-50-amd64"
    assert info.vermagic.startswith("6.1.0-50-amd64 SMP")
    assert info.fields["parm"] == ("answer:printed on load", "other:x")
    assert info.first("license") == "GPL"
    host_gcc = subprocess.run(
        ["gcc", "-dumpfullversion"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert info.gcc_versions == (host_gcc,)


def test_modinfo_refuses_what_is_not_a_module(tmp_path: Path) -> None:
    with pytest.raises(ModinfoError, match="not an ELF file"):
        elf_sections(b"#!/bin/sh\n" * 10, "script")
    elf32 = b"\x7fELF" + bytes([1, 1, 1]) + bytes(57)
    with pytest.raises(ModinfoError, match="not a 64-bit little-endian"):
        elf_sections(elf32, "elf32")
    gcc = shutil.which("gcc")
    if gcc is None:
        return
    (tmp_path / "plain.c").write_text("int value;\n")
    subprocess.run([gcc, "-c", "-o", "plain.o", "plain.c"], cwd=tmp_path, check=True)
    with pytest.raises(ModinfoError, match=r"no \.modinfo section"):
        module_info(tmp_path / "plain.o")


def test_a_chroot_build_needs_root(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    manifest = EnvManifest(
        key="sid-7.2-0",
        suite="sid",
        variant="minbase",
        packages=("gcc",),
        kernel_release="7.2",
        headers_dir="/usr/src/linux-headers-7.2",
        compiler="gcc-16",
        gcc_version="16.2.0",
        builder_version=1,
        size_bytes=1,
        build_seconds=1.0,
    )
    env = BuildEnv(tmp_path / "env", manifest)
    with pytest.raises(ModuleBuildError, match=r"needs root .*build_module_host"):
        build_module(source, env)
