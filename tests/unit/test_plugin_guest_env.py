# SPDX-License-Identifier: MIT
"""The environment the guest suite gets from the host's options and environment."""

from __future__ import annotations

import pytest

from harness.plugin.guest_items import mdev_environment


class FakeConfig:
    def __init__(self, **options: object) -> None:
        self.options = options

    def getoption(self, name: str) -> object:
        return self.options.get(name)


def test_options_become_the_suites_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_KERNEL_BUGS", raising=False)
    monkeypatch.delenv("HARNESS_STRESS_SECONDS", raising=False)
    config = FakeConfig(**{"--target": "vm", "mdev_type": "mtty-2"})
    env = mdev_environment(config)  # type: ignore[arg-type]
    assert env == {"HARNESS_TARGET": "vm", "HARNESS_MDEV_TYPE": "mtty-2"}


def test_kernel_bug_cases_are_asked_for_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_KERNEL_BUGS", "1")
    env = mdev_environment(FakeConfig(**{"--target": "vm"}))  # type: ignore[arg-type]
    assert env["HARNESS_KERNEL_BUGS"] == "1"


def test_the_stress_campaigns_length_reaches_the_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STRESS_SECONDS", "60")
    monkeypatch.setenv("HARNESS_KERNEL_BUGS", "")
    env = mdev_environment(FakeConfig(**{"--target": "vm"}))  # type: ignore[arg-type]
    assert env["HARNESS_STRESS_SECONDS"] == "60"
    assert "HARNESS_KERNEL_BUGS" not in env, "an empty variable is not passed on"
