"""Shared fixtures: tiny synthetic MovieLens files and one tiny trained, exported model version."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # before anything imports TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.synth import Synth, make_synth, write_layout

# Few timestamp buckets: 1,000 buckets over ~1,000 training ratings would leave each bucket one example.
TINY_TRAINING = dict(
    layers=(16, 8), embedding_dim=8, epochs=8, batch_size=64, eval_every=4, learning_rate=0.01, timestamp_buckets=20,
    # A strong re-ordering of each answer's best 8, whatever the default's: the oracles check it is served.
    rating_demote_pool=8, rating_demote_margin=0.0, rating_demote_penalty=10.0,
)  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def ratings_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Apps started by tests store ratings in a temporary database, never in the repository's data/."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ratings')}/ratings.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_RATINGS_URL", url)
        yield url


@pytest.fixture(scope="session")
def synth() -> Synth:
    return make_synth()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory, synth: Synth) -> Path:
    """A data dir holding the synthetic set in the RecBole layout, as `fetch` would leave ml-100k."""
    root = tmp_path_factory.mktemp("data")
    write_layout(synth, root / "ml-100k", "recbole")
    return root


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> Path:
    """A models dir with one tiny trained version, promoted to CURRENT. Treat it as read-only."""
    from training.config import TrainConfig
    from training.train import train_versions

    models = tmp_path_factory.mktemp("models")
    train_versions([TrainConfig(**TINY_TRAINING)], tiny_data_dir, models, promote_version=True, progress=False)
    return models


@pytest.fixture(scope="session")
def tiny_version_dir(tiny_models_dir: Path) -> Path:
    """The exported version directory (models/<version>/) of the tiny model."""
    return tiny_models_dir / (tiny_models_dir / "CURRENT").read_text().strip()
