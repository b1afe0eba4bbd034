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
    assert any(line.startswith("model (B)") for line in lines)
    config = json.loads((version / "manifest.json").read_text())["config"]
    assert config["optimizer"] == "adam" and config["layers"] == [8] and config["epochs"] == 2


def test_several_layers_compare_on_one_split_without_promoting(tiny_data_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = runner.invoke(app, ["train", "--data-dir", str(tiny_data_dir), "--models-dir", str(models),
                                 "--layers", "8", "--layers", "8,4", "--embedding-dim", "4", "--epochs", "1",
                                 "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    versions = [Path(line) for line in result.output.strip().splitlines()[-2:]]
    assert [json.loads((v / "manifest.json").read_text())["config"]["layers"] for v in versions] == [[8], [8, 4]]
    assert not (models / "CURRENT").exists()


def test_bad_options_fail_with_a_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--layers", "64,x", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--layers expects comma-separated integers" in result.output
    result = runner.invoke(app, ["train", "--optimizer", "sgd", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "--optimizer" in result.output
    result = runner.invoke(app, ["train", "--preset", "paper", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown preset" in result.output
    result = runner.invoke(app, ["train", "--data-dir", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "python -m training fetch" in result.output


def test_promote_rolls_back_and_pins(tiny_models_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    version = (tiny_models_dir / "CURRENT").read_text().strip()
    shutil.copytree(tiny_models_dir / version, models / version)
    result = runner.invoke(app, ["promote", version, "--models-dir", str(models), "--pin"])
    assert result.exit_code == 0, result.output
    assert (models / "CURRENT").read_text().strip() == version == (models / "PINNED").read_text().strip()
    result = runner.invoke(app, ["promote", "19990101T000000Z", "--models-dir", str(models)])
    assert result.exit_code == 2 and "not a complete version" in result.output
    assert (models / "CURRENT").read_text().strip() == version
