"""A first version (`--preset first`, what `make up` serves at once): one fit on every rating, unscored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tests.conftest import TINY_TRAINING
from tests.synth import Synth
from training.config import TrainConfig, build_config
from training.stages import StageLog
from training.train import train_versions


def test_an_unscored_run_fits_once_on_every_rating_and_exports_a_servable_version(
    tiny_data_dir: Path, tmp_path: Path, synth: Synth
) -> None:
    stages = StageLog()
    config = TrainConfig(**{**TINY_TRAINING, "evaluate": False})
    (trained,) = train_versions([config], tiny_data_dir, tmp_path, promote_version=True, progress=False, stages=stages)
    assert [stage.name for stage in stages.stages] == ["load", "refit", "export"]
    manifest = json.loads((trained.version_dir / "manifest.json").read_text())
    assert manifest["metrics"]["model"] == {} and manifest["metrics"]["most_popular"] == {}
    assert manifest["metrics"]["test_size"] == 0 and manifest["config"]["evaluate"] is False
    # Served from every rating: the seen lists hold all of them.
    with np.load(trained.version_dir / "seen.npz") as seen:
        assert len(seen["movie_rows"]) == len(synth.ratings)
    assert (tmp_path / "CURRENT").read_text().strip() == trained.version_dir.name


def test_the_first_preset_is_the_default_model_unscored_in_fewer_epochs() -> None:
    first, default = build_config("first"), TrainConfig()
    assert (first.evaluate, first.epochs) == (False, 8)
    assert first.query_spec == default.query_spec and first.layers == default.layers
    with pytest.raises(ValidationError, match="needs refit=True"):
        TrainConfig(evaluate=False, refit=False)
