# SPDX-License-Identifier: MIT
"""Where the suite, kmod/ and the recipes are found: the variable, the package, the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.cli_errors import EXIT_UNAVAILABLE
from harness.core import resources
from harness.core.resources import KMOD, RECIPES, SUITE, ResourceNotFoundError


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for resource in resources.RESOURCES.values():
        monkeypatch.delenv(resource.env, raising=False)


def _bundle(root: Path) -> Path:
    (root / "tests/uapi").mkdir(parents=True)
    (root / "tests/uapi/conftest.py").write_text("")
    (root / "kmod").mkdir()
    (root / "kmod/Kbuild").write_text("obj-m := x.o\n")
    (root / "vm_images").mkdir()
    return root


def test_a_checkout_finds_its_own_trees(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch)
    checkout = Path(__file__).resolve().parents[2]
    # As an editable install or a plain checkout: no bundle (tox installs a wheel, which has one).
    monkeypatch.setattr(resources, "BUNDLE_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(resources, "CHECKOUT_DIR", checkout)
    assert SUITE.locate() == resources.Located(checkout / "tests/uapi", "checkout")
    assert KMOD.locate().path == checkout / "kmod"
    assert RECIPES.locate().path == checkout / "vm_images"


def test_the_installed_bundle_comes_before_a_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _clear(monkeypatch)
    monkeypatch.setattr(resources, "BUNDLE_DIR", _bundle(tmp_path / "_bundle"))
    for resource in (SUITE, KMOD, RECIPES):
        located = resource.locate()
        assert located.origin == "package"
        assert located.path == tmp_path / "_bundle" / resource.relative


def test_the_variable_is_authoritative(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch)
    monkeypatch.setenv(KMOD.env, str(tmp_path))
    with pytest.raises(ResourceNotFoundError, match=r"\$HARNESS_KMOD_SRC is .*no Kbuild or Make"):
        KMOD.locate()  # no fallback to the checkout's kmod/
    (tmp_path / "Makefile").write_text("all:\n")
    assert KMOD.locate() == resources.Located(tmp_path, "$HARNESS_KMOD_SRC")


def test_nowhere_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch)
    monkeypatch.setattr(resources, "BUNDLE_DIR", tmp_path / "none")
    monkeypatch.setattr(resources, "CHECKOUT_DIR", tmp_path)
    with pytest.raises(ResourceNotFoundError, match=r"reinstall .* or set HARNESS_SUITE"):
        SUITE.locate()


def test_paths_prints_each_with_its_origin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _clear(monkeypatch)
    monkeypatch.setattr(resources, "BUNDLE_DIR", _bundle(tmp_path / "_bundle"))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["paths"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"suite    {tmp_path}/_bundle/tests/uapi  (package)",
        f"kmod     {tmp_path}/_bundle/kmod  (package)",
        f"recipes  {tmp_path}/_bundle/vm_images  (package)",
        f"cache    {tmp_path}/cache  ($HARNESS_CACHE_DIR)",
    ]
    assert cli.main(["paths", "kmod"]) == 0
    assert capsys.readouterr().out == f"{tmp_path}/_bundle/kmod\n"
    monkeypatch.setenv(SUITE.env, str(tmp_path))
    assert cli.main(["paths", "suite"]) == EXIT_UNAVAILABLE
    assert "$HARNESS_SUITE is" in capsys.readouterr().err
