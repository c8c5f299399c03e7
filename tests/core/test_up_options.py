"""`docvl up`'s options against its environment: an option given wins, else DOCVL_*, else the default."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from docvl.cli import platform
from docvl.cli.serve import app
from docvl.up.settings import UpSettings


@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    platform.register(app)
    return app


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[UpSettings]:
    """What `docvl up` would start with, instead of starting it."""
    seen: list[UpSettings] = []

    def fake_up(settings: UpSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("docvl.up.launcher.up", fake_up)
    return seen


@pytest.mark.parametrize(
    ("environment", "arguments", "demo"),
    [
        ({}, [], True),
        ({"DOCVL_DEMO": "false"}, [], False),
        ({"DOCVL_DEMO": "false"}, ["--demo"], True),
        ({}, ["--no-demo"], False),
    ],
)
def test_the_demo_follows_the_option_then_the_environment(
    cli: typer.Typer,
    started: list[UpSettings],
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    arguments: list[str],
    demo: bool,
) -> None:
    monkeypatch.delenv("DOCVL_DEMO", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["up", *arguments])
    assert result.exit_code == 0, result.output
    assert [s.demo for s in started] == [demo]
