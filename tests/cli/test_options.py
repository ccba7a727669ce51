"""Options into settings: errors name the real flag, train's text options, given options only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from geoseg.cli import app
from geoseg.cli.options import given_options

runner = CliRunner()


def one_error_line(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value"),
    [("--workers", "-1"), ("--min-area", "-1"), ("--tile-size", "8"), ("--overlap", "-1")],
)
def test_run_validation_errors_name_the_flag(option: str, value: str, tmp_path: Path) -> None:
    line = one_error_line(
        "run", "--aoi", tmp_path / "aoi.geojson", "--scenes", tmp_path, "--out", tmp_path / "o",
        option, value,
    )  # fmt: skip
    assert line.startswith(f"error: {option}: "), line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--label-map", "11-1", "--label-map '11-1': write e.g. 11=1,12=1"),
        ("--label-map", "11=x", "--label-map '11=x': write e.g. 11=1,12=1"),
        ("--bands", "1,x", "--bands '1,x': expected comma-separated numbers"),
        ("--decoder-channels", "16,8.5", "--decoder-channels '16,8.5': expected comma-separated"),
        ("--focal-alpha", "0.25,high", "--focal-alpha '0.25,high': expected comma-separated"),
    ],
)
def test_train_text_options_that_do_not_parse(
    option: str, value: str, message: str, tmp_path: Path
) -> None:
    line = one_error_line(
        "train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "b.tif",
        "--out", tmp_path / "m.geoseg", option, value,
    )  # fmt: skip
    assert line.startswith(f"error: {message}"), line


probe = typer.Typer()
handed_on: list[dict] = []


@probe.command()
def probe_command(
    ctx: typer.Context,
    *,
    config: Annotated[str | None, typer.Option()] = None,
    image: Annotated[list[Path] | None, typer.Option()] = None,
    epochs: Annotated[int | None, typer.Option()] = None,
    resume: Annotated[bool | None, typer.Option("--resume")] = None,
    augment: Annotated[bool | None, typer.Option("--augment/--no-augment")] = None,
) -> None:
    """Records what `given_options` hands on (as `geoseg train` does, without ``config``)."""
    handed_on.append(given_options(ctx, exclude={"config"}))


def test_only_given_options_are_handed_on() -> None:
    handed_on.clear()
    assert runner.invoke(probe, ["--config", "c.yaml"]).exit_code == 0
    assert runner.invoke(probe, ["--image", "a", "--image", "b", "--resume"]).exit_code == 0
    assert runner.invoke(probe, ["--epochs", "3", "--no-augment"]).exit_code == 0
    assert handed_on == [
        {},
        {"image": [Path("a"), Path("b")], "resume": True},
        {"epochs": 3, "augment": False},
    ]


def test_every_training_setting_is_a_train_option() -> None:
    """The configs say every key is a `geoseg train` option (CLI options win): each field of
    `TrainSettings` has one, but ``arch_args``, a mapping only a config file can hold."""
    from geoseg.training.settings import TrainSettings

    command = typer.main.get_command(app).commands["train"]
    options = {param.name for param in command.params}
    assert set(TrainSettings.model_fields) - options == {"arch_args"}
