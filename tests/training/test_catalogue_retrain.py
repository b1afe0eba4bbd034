"""A retrain after movies were added through the catalogue store: they join the vocabulary with their stored
ratings, the gate scores the old version (which lacks them) as it serves, and the new version serves them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from contract.catalogue import CatalogueStore, MovieChange, NewMovie
from contract.pointers import read_pointer
from contract.ratings import Rating, RatingsStore
from tests.conftest import TINY_TRAINING
from tests.service.conftest import serving
from training.config import TrainConfig
from training.gate import GateConfig
from training.retrain import retrain


def test_a_retrain_after_adding_movies_serves_them_from_the_new_version(
    tmp_path: Path, tiny_data_dir: Path, tiny_models_dir: Path, synth: Any
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    first = read_pointer(models, "CURRENT")
    url = f"sqlite:///{tmp_path}/ratings.db"
    with CatalogueStore(url) as catalogue:
        catalogue.create_schema()
        catalogue.add([NewMovie("990001", "Zyzzyva Nights", ("Comedy",), 1996), NewMovie("990002", "Gone", ("Drama",))])
        catalogue.change(MovieChange("990002", available=False))
        cutoff = catalogue.change(MovieChange("1", title="Film One Renamed"))
    end = int(synth.ratings[:, 3].max())
    rng = np.random.default_rng(7)
    new = [  # users 1-30 rate the new movies and two known ones after the data ends
        Rating(str(u), str(m), 4.0, end + 100 * u + i)
        for u in range(1, 31)
        for i, m in enumerate(["990001", "990002", *map(str, rng.choice(40, size=2, replace=False) + 1)])
    ]
    with RatingsStore(url) as store:
        store.create_schema()
        store.add(new)

    gate = GateConfig(tolerance=1.0, k=10, min_window=50)
    result = retrain(TrainConfig(**TINY_TRAINING), tiny_data_dir, models, gate, keep=2, ratings_url=url)

    assert result.promoted and result.serving == result.candidate != first, result.reasons
    record = json.loads(result.record.read_text())
    check = record["checks"][-1]
    assert check["name"] == "metric T.top_10" and isinstance(check["figures"]["current"], float), check
    version = models / result.candidate
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["data"]["catalogue_cutoff_id"] == cutoff and manifest["data"]["num_stored_ratings"] == 120
    movies = {m["movie_id"]: m for m in json.loads((version / "movies.json").read_text())}
    assert movies["990001"] == {"movie_id": "990001", "title": "Zyzzyva Nights (1996)", "genres": ["Comedy"]}
    assert "990002" in movies  # withdrawn: still trained on, never served
    assert movies["1"]["title"].startswith("Film One Renamed")
    seen = np.load(version / "seen.npz")
    rows = list(movies)
    assert rows.index("990001") in seen["movie_rows"].tolist()  # its stored ratings were trained on

    with serving(models, ratings_url=url) as client:
        assert client.get("/model").json()["version"] == result.candidate
        served = client.app.state.service.registry.current  # type: ignore[attr-defined]
        assert "990001" in served.base.row_of_movie  # the new version's own movie now, not an added one
        assert [m["movie_id"] for m in client.get("/movies", params={"q": "zyzzyva"}).json()] == ["990001"]
        assert client.get("/movies", params={"q": "gone"}).json() == []
        assert client.get("/movies/990002/similar").status_code == 404
        items = client.get("/recommend", params={"user_id": "45", "k": 100}).json()["items"]
        assert "990001" in [i["movie_id"] for i in items] and "990002" not in [i["movie_id"] for i in items]
