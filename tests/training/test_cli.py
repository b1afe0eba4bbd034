"""The `python -m training` command line: happy path and readable failures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from training.__main__ import app

runner = CliRunner()


def test_train_prints_the_version_directory_last(tiny_data_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = runner.invoke(app, ["train", "--data-dir", str(tiny_data_dir), "--models-dir", str(models),
                                 "--layers", "8", "--embedding-dim", "4", "--epochs", "2", "--batch-size", "256",
                                 "--optimizer", "adam", "--learning-rate", "0.01", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    version = Path(lines[-1])
    assert version.parent == models and (version / "manifest.json").is_file()
    assert (models / "CURRENT").read_text().strip() == version.name
    assert any(line.startswith("model (B)") for line in lines) and "promoted: True" in lines
    config = json.loads((version / "manifest.json").read_text())["config"]
    assert config["optimizer"] == "adam" and config["layers"] == [8] and config["epochs"] == 2


def test_several_layers_compare_on_one_split_without_promoting(tiny_data_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = runner.invoke(app, ["compare", "--data-dir", str(tiny_data_dir), "--models-dir", str(models),
                                 "--layers", "8", "--layers", "8,4", "--embedding-dim", "4", "--epochs", "1",
                                 "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    versions = [Path(line) for line in result.output.strip().splitlines()[-2:]]
    assert [json.loads((v / "manifest.json").read_text())["config"]["layers"] for v in versions] == [[8], [8, 4]]
    assert not (models / "CURRENT").exists()


def test_bad_options_fail_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--layers", "64,x", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--layers: expects comma-separated integers" in result.output
    result = runner.invoke(app, ["train", "--optimizer", "sgd", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--optimizer" in result.output
    result = runner.invoke(app, ["train", "--preset", "paper", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown preset" in result.output
    result = runner.invoke(app, ["train", "--data-dir", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "python -m training fetch" in result.output
    result = runner.invoke(app, ["retrain", "--gate-tolerance", "2", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--gate-tolerance: Input should be less than or equal to 1" in result.output


def test_every_config_field_is_an_option_with_its_reason_and_default() -> None:
    """The command line is generated from TrainConfig and GateConfig: nothing to keep in sync by hand."""
    import typer

    from training.config import TrainConfig
    from training.gate import GateConfig

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]

    def options(command: str) -> dict[str, str]:
        return {opt: param.help for param in commands[command].params for opt in param.opts}

    train, retrain = options("train"), options("retrain")
    for name, field in TrainConfig.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        assert train[flag] == retrain[flag] == f"{field.description} [default: {_shown(field.default)}]"
    for name, field in GateConfig.model_fields.items():
        assert retrain[f"--gate-{name.replace('_', '-')}"].startswith(str(field.description))
    assert train["--layers"].endswith("[default: 64,32]")
    assert retrain["--gate-tolerance"].endswith("[default: 0.01]")
    negations = {opt for param in commands["train"].params for opt in param.secondary_opts}
    assert "--no-sampling-bias-correction" in negations  # booleans are flags both ways


def _shown(default: object) -> str:
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
