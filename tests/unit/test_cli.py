# SPDX-License-Identifier: MIT
"""The `vfio-harness` front end: real output, and one-line errors for user mistakes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from harness import cli
from harness.cli_errors import EXIT_UNAVAILABLE, EXIT_USAGE
from harness.commands import mdev as mdev_commands
from harness.commands import vm as vm_commands
from harness.mdev import MdevSysfs
from harness.mdev.fake import FakeMdevTree, FakeParentSpec, FakeTypeSpec
from harness.vm.run_dir import RunDir
from harness.vm.sessions import (
    SESSION_FILE,
    Session,
    SessionNotFoundError,
    find_session,
    live_sessions,
)


@pytest.fixture
def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMdevTree:
    parent = FakeParentSpec(types=(FakeTypeSpec("1", "Single port", "one port"),), capacity=2)
    tree = FakeMdevTree(tmp_path, (parent,))
    monkeypatch.setattr(mdev_commands, "MdevSysfs", lambda root: tree.sysfs())
    return tree


def test_mdev_create_list_remove_round_trip(
    fake_host: FakeMdevTree, capsys: pytest.CaptureFixture[str]
) -> None:
    uuid = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001"
    assert cli.main(["mdev", "create", "mtty-1", "--uuid", uuid]) == 0
    assert capsys.readouterr().out.strip() == uuid

    assert cli.main(["mdev", "list"]) == 0
    listing = capsys.readouterr().out
    assert "mtty-1: Single port [vfio-pci] available=1" in listing
    assert f"{uuid} group=0 cdev=" in listing

    assert cli.main(["mdev", "remove", uuid]) == 0
    assert not MdevSysfs(fake_host.root, fake_host.io).device_uuids()


def test_kernel_errors_are_one_line_not_a_traceback(
    fake_host: FakeMdevTree, capsys: pytest.CaptureFixture[str]
) -> None:
    uuid = "3f7a9c1e-5b2d-4e8f-9a6c-0d1e2f3a4b5c"
    assert cli.main(["mdev", "create", "mtty-1", "--uuid", uuid]) == 0
    assert cli.main(["mdev", "create", "mtty-1", "--uuid", uuid]) == EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith("vfio-harness: error:") and "EEXIST" in err
    assert "Traceback" not in err
    assert cli.main(["mdev", "create", "mtty-1", "--uuid", "not-a-uuid"]) == EXIT_USAGE
    assert "--uuid not-a-uuid: not a UUID" in capsys.readouterr().err


def test_unknown_kernel_is_a_user_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        cli.main(["run", "--kernel", "bookworm,nosuch", "--reports", str(tmp_path)]) == EXIT_USAGE
    )
    err = capsys.readouterr().err
    assert "--kernel nosuch: not an image recipe" in err and "Traceback" not in err


def test_check_headers_on_the_host_headers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["uapi", "check-headers", "--name", "host"]) == 0
    assert "0 mismatches" in capsys.readouterr().out


def test_unknown_recipe_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["images", "build", "nosuch"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nosuch.toml" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], (None, [])),
        (["vm-abc"], ("vm-abc", [])),
        (["--", "uname", "-r"], (None, ["uname", "-r"])),
        (["trixie", "--", "ls", "--", "x"], ("trixie", ["ls", "--", "x"])),
    ],
)
def test_vm_ssh_words(words: list[str], expected: tuple[str | None, list[str]]) -> None:
    assert vm_commands.split_ssh_words(words) == expected


def test_vm_ssh_without_a_running_vm_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert cli.main(["vm", "ssh", "--", "true"]) == EXIT_UNAVAILABLE
    assert "no running VM: start one with `vfio-harness vm boot`" in capsys.readouterr().err
    assert cli.main(["vm", "ssh", "a", "b"]) == EXIT_USAGE
    assert "one VM name at most" in capsys.readouterr().err


def test_vm_sessions_are_live_only_while_locked(tmp_path: Path) -> None:
    """A session whose vm boot process died (lock free) is not offered for connecting."""
    live = RunDir.create(tmp_path)
    dead = RunDir.create(tmp_path)
    for run, label in ((live, "bookworm"), (dead, "trixie")):
        session = Session(run.path.name, label, "6.1", "tcg", 1, "k", "h", str(run.path))
        (run.path / SESSION_FILE).write_text(json.dumps(asdict(session)))
    dead.release()
    assert [s.label for s in live_sessions(tmp_path)] == ["bookworm"]
    assert find_session(None, tmp_path).name == live.path.name
    assert find_session("bookworm", tmp_path).name == live.path.name
    with pytest.raises(SessionNotFoundError, match="no running VM called 'trixie'"):
        find_session("trixie", tmp_path)
    live.release()
