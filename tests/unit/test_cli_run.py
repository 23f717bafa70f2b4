# SPDX-License-Identifier: MIT
"""`vfio-harness run`: the pytest command it builds, which kernels it passes, and the one-line
errors of --kernel-tree (nothing is built or booted here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.cli_errors import EXIT_UNAVAILABLE, EXIT_USAGE, UsageError
from harness.commands import run as run_command
from harness.core.cache import cache_root
from harness.kernel import build as kernel_build
from harness.kernel.fragments import with_base

SUITE = Path("/checkout/tests/uapi")
REPORTS = Path("/reports")


def command(*argv: str, kernels: str = "bookworm") -> list[str]:
    args = cli.build_parser().parse_args(["run", *argv])
    return run_command.pytest_command(args, SUITE, REPORTS, kernels)


def test_the_default_command() -> None:
    assert command() == [
        sys.executable,
        "-m",
        "pytest",
        str(SUITE),
        "-o",
        f"cache_dir={cache_root() / 'pytest'}",  # --lf and --ff work
        "--rootdir=/checkout",  # test ids read tests/uapi/..., from a checkout or the package
        "--guest-suite=/checkout/tests/uapi",
        "--junitxml=/reports/junit.xml",
        "--ktap=/reports/results.ktap",
        "--verdicts=/reports/verdicts.json",
        "--results=/reports/results.json",
        "--target=vm",
        "--kernel=bookworm",
    ]


def test_options_and_pytest_arguments_pass_through(tmp_path: Path) -> None:
    given = ("-n", "2", "--module-faults", "3", "--vendor-src", str(tmp_path), "--", "-k", "dma")
    assert command(*given, kernels="debug")[-7:] == [
        "--kernel=debug",
        "-n",
        "2",
        f"--vendor-src={tmp_path}",
        "--module-faults=3",
        "-k",
        "dma",
    ]


def suite_in(tmp_path: Path) -> Path:
    suite = tmp_path / "checkout" / "tests" / "uapi"
    suite.mkdir(parents=True)
    (suite / "test_info.py").touch()
    (suite / "test_dma_map.py").touch()
    return suite


def test_test_paths_and_ids_after_the_dashes_select_what_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = suite_in(tmp_path)
    monkeypatch.chdir(suite)  # the user's directory: a path from here resolves
    given = [
        "--", "-k", "map", "tests/uapi/test_info.py::test_x[type1-bookworm]",  # as reports say
        "test_dma_map.py", "-x",  # from the user's directory
    ]  # fmt: skip
    args = cli.build_parser().parse_args(["run", *given])
    argv = run_command.pytest_command(args, suite, REPORTS)
    assert argv[3:5] == [
        f"{suite}/test_info.py::test_x[type1-bookworm]",
        f"{suite}/test_dma_map.py",
    ]
    assert str(suite) not in argv  # not the whole suite as well
    assert argv[-3:] == ["-k", "map", "-x"]


def test_an_option_value_is_not_taken_for_a_test_path(tmp_path: Path) -> None:
    suite = suite_in(tmp_path)
    args = cli.build_parser().parse_args(["run", "--", "-k", "test_info.py", "-p", "no:x"])
    argv = run_command.pytest_command(args, suite, REPORTS)
    assert argv[3] == str(suite)
    assert argv[-4:] == ["-k", "test_info.py", "-p", "no:x"]


def test_values_of_options_no_list_knows_pass_through(tmp_path: Path) -> None:
    suite = suite_in(tmp_path)
    given = ["--", "--ktap", "out.ktap", "--lfnf", "none", "-xk", "info", "--vm-memory", "4096"]
    args = cli.build_parser().parse_args(["run", *given])
    argv = run_command.pytest_command(args, suite, REPORTS)
    assert argv[3] == str(suite)
    assert argv[-8:] == given[1:]


def test_a_test_path_that_is_not_in_the_suite_is_a_usage_error(tmp_path: Path) -> None:
    suite = suite_in(tmp_path)
    args = cli.build_parser().parse_args(["run", "--", "test_nothing.py"])
    with pytest.raises(UsageError, match=r"test_nothing\.py: no such test file"):
        run_command.pytest_command(args, suite, REPORTS)
    args = cli.build_parser().parse_args(["run", "--", "../../../etc"])
    with pytest.raises(UsageError, match="no such test file"):
        run_command.pytest_command(args, suite, REPORTS)


def test_workers_auto_is_a_number_the_host_can_run() -> None:
    workers = cli.build_parser().parse_args(["run", "-n", "auto"]).workers
    assert 1 <= workers <= len(os.sched_getaffinity(0))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "-n", "many"])


def test_a_given_module_wins_over_a_source(tmp_path: Path) -> None:
    ko = tmp_path / "m.ko"
    argv = command("--vendor-module", str(ko), "--vendor-src", str(tmp_path))
    assert f"--vendor-module={ko}" in argv
    assert not any(a.startswith("--vendor-src") for a in argv)


def test_local_runs_name_no_kernel() -> None:
    argv = command("--target", "local")
    assert "--target=local" in argv
    assert not any(a.startswith("--kernel") for a in argv)


@pytest.mark.parametrize(
    ("argv", "tree_build", "expected"),
    [
        ((), None, "bookworm"),
        (("--kernel", "debug"), None, "debug"),
        (("--kernel-tree", "/src/linux"), Path("/b/linux-0"), "/b/linux-0"),
        (("--kernel", "trixie", "--kernel-tree", "/src/l"), Path("/b/l-0"), "trixie,/b/l-0"),
    ],
)
def test_the_kernels_pytest_gets(
    argv: tuple[str, ...], tree_build: Path | None, expected: str
) -> None:
    args = cli.build_parser().parse_args(["run", *argv])
    assert run_command.kernel_spec(args, tree_build) == expected


def test_base_comes_first_and_once() -> None:
    assert with_base([]) == ["base"]
    assert with_base(["debug"]) == ["base", "debug"]
    assert with_base(["base.config", "/x/my.config"]) == ["base", "/x/my.config"]


# --- one-line errors --------------------------------------------------------------------


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    (tree / "Kconfig").write_text("")
    return tree


@pytest.fixture
def toolchain(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the host lacks of the kernel profile (nothing, unless a test says so)."""
    missing: list[str] = []
    monkeypatch.setattr(kernel_build, "missing_packages", lambda _profile: missing)
    return missing


def run_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str, code: int = EXIT_USAGE
) -> str:
    assert cli.main(["run", "--reports", str(tmp_path / "reports"), *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("vfio-harness: error: ")
    assert "Traceback" not in err
    return err


def test_a_fragment_without_a_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = run_error(capsys, tmp_path, "--config-fragment", "debug")
    assert "--config-fragment goes with --kernel-tree" in err


def test_not_a_kernel_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = run_error(capsys, tmp_path, "--kernel-tree", str(tmp_path))
    assert "is not a kernel source tree" in err
    assert err.count("\n") == 1


def test_a_tree_built_in_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clean_tree: Path
) -> None:
    (clean_tree / ".config").write_text("CONFIG_A=y\n")
    err = run_error(capsys, tmp_path, "--kernel-tree", str(clean_tree))
    assert "make mrproper" in err
    assert err.count("\n") == 1


def test_a_missing_fragment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clean_tree: Path, toolchain: list[str]
) -> None:
    err = run_error(
        capsys, tmp_path, "--kernel-tree", str(clean_tree), "--config-fragment", "nosuch"
    )
    assert "config fragment nosuch not found" in err
    assert err.count("\n") == 1


def test_a_missing_toolchain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clean_tree: Path, toolchain: list[str]
) -> None:
    toolchain.append("bc")
    err = run_error(capsys, tmp_path, "--kernel-tree", str(clean_tree), code=EXIT_UNAVAILABLE)
    assert "building a kernel needs bc: vfio-harness setup --profile kernel" in err
    assert err.count("\n") == 1


def test_a_tree_is_booted_in_vms_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = run_error(capsys, tmp_path, "--target", "local", "--kernel-tree", str(tmp_path))
    assert "--kernel-tree is for VMs" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-n", "0"], "-n 0: give 1 or more"),
        (["--vendor-module", "/nonexistent/x.ko", "--mdev-type", "t"], "no such file"),
        (["--vendor-src", "/nonexistent", "--mdev-type", "t"], "no Kbuild or Makefile"),
        (["--vendor-module", "{ko}", "--vendor-src", "{src}", "--mdev-type", "t"], "give one"),
        (["--vendor-module", "{ko}"], "name the vendor driver's device to test"),
        (["--vendor-src", "{src}", "--module-faults", "1", "--mdev-type", "t"], "not a vendor's"),
        (["--mdev-uuid", "u", "--mdev-type", "t"], "give it alone"),
        (["--mdev-parent", "p"], "--mdev-parent goes with --mdev-type"),
        (["--target", "local", "--kernel", "trixie"], "--kernel is for VMs"),
        (["--target", "local", "--module-faults", "1"], "not with --target local"),
        (["--expect", "mmap,warp-drive"], "--expect warp-drive: not a capability; known: pci,"),
    ],
)
def test_options_that_could_only_test_nothing_are_refused_before_any_build(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    ko = tmp_path / "vendor.ko"
    ko.write_bytes(b"\x7fELF")
    src = tmp_path / "src"
    src.mkdir()
    (src / "Kbuild").write_text("obj-m := v.o\n")
    given = [a.format(ko=ko, src=src) for a in argv]
    err = run_error(capsys, tmp_path, *given)
    assert message in err
    assert not (tmp_path / "reports").exists(), "nothing may be made before the check"


def test_pytest_options_before_the_separator_say_where_they_go(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "-k", "dma"])
    assert exited.value.code == EXIT_USAGE
    assert (
        "pytest's options go after --, e.g. vfio-harness run -- -k dma" in capsys.readouterr().err
    )


def test_secure_boot_reaches_pytest_with_the_signing_identity(tmp_path: Path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.der"
    argv = ["--firmware", "secureboot", "--signing-key", str(key), "--signing-cert", str(cert)]
    assert command(*argv)[-3:] == [
        "--firmware=secureboot",
        f"--signing-key={key}",
        f"--signing-cert={cert}",
    ]
    assert not any(a.startswith("--firmware") for a in command()), "direct is the default"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--signing-key", "k.pem"], "are for --firmware secureboot"),
        (["--firmware", "secureboot", "--signing-key", "k.pem"], "needs its certificate"),
        (["--firmware", "secureboot", "--signing-cert", "/nonexistent.der"], "not found"),
        (["--firmware", "uefi", "--kernel", "bookworm,debug"], "boots with --firmware direct"),
        (["--firmware", "secureboot", "--target", "local"], "not with --target local"),
    ],
)
def test_firmware_options_that_cannot_work_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], says: str
) -> None:
    assert says in run_error(capsys, tmp_path, *argv)


def test_a_certificate_that_is_not_the_keys_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from harness.kmod.signing import identity_in

    one, other = identity_in(tmp_path / "one"), identity_in(tmp_path / "other")
    assert one.key is not None
    argv = ["--firmware", "secureboot", "--signing-key", str(one.key)]
    err = run_error(capsys, tmp_path, *argv, "--signing-cert", str(other.certificate))
    assert "is not the certificate of" in err
