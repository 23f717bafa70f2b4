# SPDX-License-Identifier: MIT
"""The one cached-build pattern: built once whoever asks, published whole or not at all,
leftovers of killed builds removed, superseded entries pruned."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.core.cached_build import cached_build, input_key, prune, prune_least_used, used

CHECKOUT = Path(__file__).resolve().parents[2]


def read_value(entry: Path) -> str | None:
    record = entry / "record"
    return record.read_text() if record.is_file() else None


def writer(text: str, calls: list[Path]) -> Callable[[Path], str]:
    def build(scratch: Path) -> str:
        calls.append(scratch)
        (scratch / "record").write_text(text)
        return text

    return build


def test_an_entry_is_built_once_then_read(tmp_path: Path) -> None:
    calls: list[Path] = []
    first = cached_build(tmp_path / "k1", writer("v1", calls), read_value)
    assert (first.value, first.how, first.path) == ("v1", "built", tmp_path / "k1")
    again = cached_build(tmp_path / "k1", writer("v2", calls), read_value)
    assert (again.value, again.how) == ("v1", "cached")
    assert len(calls) == 1
    assert calls[0].name.startswith(".k1.tmp-")  # built beside the entry, then renamed
    assert (tmp_path / "k1").stat().st_mode & 0o777 == 0o755


def test_a_failed_build_publishes_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    def broken(scratch: Path) -> str:
        (scratch / "half").write_text("x")
        raise RuntimeError("make failed")

    with pytest.raises(RuntimeError, match="make failed"):
        cached_build(tmp_path / "k", broken, read_value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".k.lock"]


def test_leftovers_of_killed_builds_go_and_a_rebuild_replaces(tmp_path: Path) -> None:
    (tmp_path / ".k.tmp-killed").mkdir()
    (tmp_path / ".k.old-123").mkdir()
    calls: list[Path] = []
    cached_build(tmp_path / "k", writer("v1", calls), read_value)
    assert not (tmp_path / ".k.tmp-killed").exists()
    assert not (tmp_path / ".k.old-123").exists()
    rebuilt = cached_build(tmp_path / "k", writer("v2", calls), read_value, rebuild=True)
    assert (rebuilt.value, rebuilt.how, read_value(tmp_path / "k")) == ("v2", "built", "v2")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".k.lock", "k"]


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from harness.core.cached_build import cached_build

    def build(scratch):
        with open(sys.argv[2], "a") as log:
            log.write("built\\n")
        time.sleep(0.5)  # long enough for the other process to wait on the lock
        (scratch / "record").write_text("v")
        return "v"

    def read(entry):
        return "v" if (entry / "record").is_file() else None

    print(cached_build(Path(sys.argv[1]), build, read).how)
    """
)


def test_parallel_workers_build_an_entry_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    command = [sys.executable, "-c", RACER, str(tmp_path / "entry"), str(log)]
    env = {"PYTHONPATH": str(CHECKOUT), "PATH": "/usr/bin:/bin"}
    racers = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in "ab"]
    hows = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    assert log.read_text() == "built\n"
    assert hows in (["another", "built"], ["built", "cached"])


def test_prune_keeps_the_newest_and_the_current(tmp_path: Path) -> None:
    entries = []
    for stamp in range(5):
        path = tmp_path / f"e{stamp}"
        path.mkdir()
        (tmp_path / f".e{stamp}.lock").touch()
        entries.append((float(stamp), path))
    removed = prune(entries, 2, current=tmp_path / "e0")
    assert sorted(p.name for p in removed) == ["e1", "e2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e0.lock", ".e3.lock", ".e4.lock",
                                                         "e0", "e3", "e4"]  # fmt: skip


def test_least_used_entries_go_and_using_one_keeps_it(tmp_path: Path) -> None:
    for age, name in enumerate(["a", "b", "c", "d"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    (tmp_path / ".a.lock").touch()
    (tmp_path / ".d.tmp-1").mkdir()  # a build under way: not an entry
    used(tmp_path / "a")  # the oldest, just used: now the newest
    gone = prune_least_used(tmp_path, 2, current=tmp_path / "b")
    assert sorted(path.name for path in gone) == ["c"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".a.lock",
        ".d.tmp-1",
        "a",
        "b",
        "d",
    ]


def test_an_input_key_depends_on_the_inputs_not_their_order() -> None:
    assert input_key({"a": 1, "b": [2, 3]}) == input_key({"b": [2, 3], "a": 1})
    assert input_key({"a": 1}) != input_key({"a": 2})
    assert len(input_key({"a": 1})) == 16
    assert len(input_key({"a": 1}, 20)) == 20
