"""The promotion gate and the retraining cycle, on hand-made version directories and a tiny real model."""

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.checksums import file_checksums
from contract.manifest import DataInfo, IndexInfo, Manifest, Metrics, QueryInfo
from contract.pointers import read_pointer
from training import retrain as retrain_module
from training.gate import (
    Figure,
    GateConfig,
    SmokeCheckError,
    decide,
    run_smoke_query,
)
from training.retrain import (
    RetrainBusyError,
    exclusive,
    prune,
    retrain,
    retrain_every,
    seconds_until_due,
)

GATE = GateConfig(k=100, tolerance=0.01, min_recall=0.9, smoke_k=10)


def passing_smoke(version_dir: Path, config: GateConfig) -> dict[str, Figure]:
    return {"users": 3, "embedding_dim": 4, "neighbours": config.smoke_k, "recall": 1.0}


def failing_smoke(version_dir: Path, config: GateConfig) -> dict[str, Figure]:
    raise SmokeCheckError("smoke process exited 1: OSError: SavedModel file does not exist")


def make_version(
    models_dir: Path,
    name: str,
    *,
    b_top_100: float = 0.40,
    recall: float = 0.97,
    seed: int = 42,
    fingerprint: str = "f" * 64,
    test_size: int = 20000,
) -> Path:
    """A version directory shaped like the contract in models/README.md, with placeholder artifacts."""
    version = models_dir / name
    (version / "query_model").mkdir(parents=True)
    (version / "query_model" / "saved_model.pb").write_bytes(b"not a real model " + name.encode())
    np.save(version / "candidate_embeddings.npy", np.ones((5, 4), np.float32))
    movies = [{"movie_id": str(i), "title": f"M{i}", "genres": []} for i in range(5)]
    (version / "movies.json").write_text(json.dumps(movies))
    table = {"top_10": b_top_100 / 4, "top_100": b_top_100}
    manifest = Manifest(
        version=name,
        created_at="2026-01-01T00:00:00+00:00",
        config={"layers": [64, 32], "seed": seed, "split": "random"},
        data=DataInfo(
            dataset="ml-100k",
            fingerprint=fingerprint,
            layout="recbole",
            num_ratings=100,
            num_users=10,
            num_movies=5,
            timestamp_min=874724710,
            timestamp_max=893286638,
        ),
        library_versions={},
        metrics=Metrics(model={"A": table, "B": table}, most_popular={"B": table}, split="random", test_size=test_size),
        index=IndexInfo(kind="tree_ah", recall_k=100, recall=recall, num_movies=5),
        query=QueryInfo(history_length=0, timestamp_min=874724710, timestamp_max=893286638),
        embedding_dim=4,
        files=file_checksums(version),
    )
    (version / "manifest.json").write_text(manifest.model_dump_json())
    return version


def test_first_version_is_promoted_when_its_own_checks_pass(tmp_path: Path) -> None:
    candidate = make_version(tmp_path, "20260101T000000Z")
    decision = decide(candidate, None, GATE, smoke=passing_smoke)
    assert decision.promoted, decision.reasons
    assert [c.name for c in decision.checks] == ["files", "smoke", "index", "metric B.top_100"]


def test_candidate_within_tolerance_is_promoted(tmp_path: Path) -> None:
    current = make_version(tmp_path, "20260101T000000Z", b_top_100=0.40)
    candidate = make_version(tmp_path, "20260102T000000Z", b_top_100=0.39)
    decision = decide(candidate, current, GATE, smoke=passing_smoke)
    assert decision.promoted, decision.reasons
    metric = decision.checks[-1]
    assert metric.figures["candidate"] == 0.39 and metric.figures["current"] == 0.40


def test_metric_drop_beyond_tolerance_is_refused_with_the_figures(tmp_path: Path) -> None:
    current = make_version(tmp_path, "20260101T000000Z", b_top_100=0.40)
    candidate = make_version(tmp_path, "20260102T000000Z", b_top_100=0.385)
    decision = decide(candidate, current, GATE, smoke=passing_smoke)
    assert not decision.promoted
    assert decision.reasons == ["metric B.top_100: 0.3850 is more than 0.01 below 20260101T000000Z's 0.4000"]


@pytest.mark.parametrize(("reported", "measured"), [(0.85, 1.0), (0.97, 0.5)])
def test_low_recall_is_refused(tmp_path: Path, reported: float, measured: float) -> None:
    candidate = make_version(tmp_path, "20260102T000000Z", recall=reported)

    def smoke(version_dir: Path, config: GateConfig) -> dict[str, Figure]:
        return {**passing_smoke(version_dir, config), "recall": measured}

    decision = decide(candidate, None, GATE, smoke=smoke)
    assert not decision.promoted
    assert len(decision.reasons) == 1
    assert decision.reasons[0].startswith("index: ScaNN recall@100")
    assert "below the threshold 0.900" in decision.reasons[0]


def test_failed_smoke_query_is_refused(tmp_path: Path) -> None:
    candidate = make_version(tmp_path, "20260102T000000Z")
    decision = decide(candidate, None, GATE, smoke=failing_smoke)
    assert not decision.promoted
    assert decision.reasons == [
        "smoke: smoke query failed: smoke process exited 1: OSError: SavedModel file does not exist"
    ]


def test_files_that_do_not_match_the_manifest_are_refused_without_loading(tmp_path: Path) -> None:
    candidate = make_version(tmp_path, "20260102T000000Z")
    (candidate / "movies.json").write_text("[]")
    (candidate / "gate.json").write_text("{}")
    decision = decide(candidate, None, GATE, smoke=failing_smoke)
    assert not decision.promoted
    files, smoke = decision.checks[0], decision.checks[1]
    assert files.detail == "not in manifest: gate.json; sha256 differs: movies.json"
    assert smoke.detail == "skipped: files do not match the manifest"


def test_different_held_out_data_is_refused_unless_allowed(tmp_path: Path) -> None:
    current = make_version(tmp_path, "20260101T000000Z", seed=42)
    candidate = make_version(tmp_path, "20260102T000000Z", seed=7, b_top_100=0.2)
    refused = decide(candidate, current, GATE, smoke=passing_smoke)
    assert not refused.promoted
    assert "different held-out data: seed 7 != 42" in refused.reasons[0]
    allowed = decide(candidate, current, GATE.model_copy(update={"allow_incomparable": True}), smoke=passing_smoke)
    assert allowed.promoted
    assert allowed.checks[-1].detail.startswith("skipped, allowed: not comparable")


def test_pruning_keeps_newest_current_and_protected(tmp_path: Path) -> None:
    names = [f"2026010{i}T000000Z" for i in range(1, 8)]
    for name in names:
        make_version(tmp_path, name)
    (tmp_path / "CURRENT").write_text(names[1] + "\n")
    (tmp_path / "PROTECTED").write_text(names[0] + "\n")
    (tmp_path / "gate").mkdir()
    stale, fresh = tmp_path / ".tmp-export-old", tmp_path / ".tmp-export-new"
    stale.mkdir()
    fresh.mkdir()
    hour_ago = time.time() - 3700
    os.utime(stale, (hour_ago, hour_ago))

    pruned = prune(tmp_path, keep=2, protect={names[3]})

    assert pruned == [names[2], names[4]]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        ["CURRENT", "PROTECTED", "gate", names[0], names[1], names[3], names[5], names[6]]
    )
    assert fresh.exists() and not stale.exists()


def test_pruning_refuses_when_current_is_garbage(tmp_path: Path) -> None:
    for name in ("20260101T000000Z", "20260102T000000Z"):
        make_version(tmp_path, name)
    (tmp_path / "CURRENT").write_text("../etc\n")
    with pytest.raises(ValueError, match="not a version name"):
        read_pointer(tmp_path, "CURRENT")
    assert prune(tmp_path, keep=1) == []


def fake_trainer(b_top_100: float) -> Any:
    """Stands in for training.train.train_versions([config], ...) without promotion."""

    def train(config: Any, data_dir: Path, models_dir: Path, *args: Any) -> tuple[Path, None]:
        return make_version(models_dir, "20990101T000000Z", b_top_100=b_top_100), None

    return train


def test_retrain_promotes_records_and_prunes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("training.gate.run_smoke_query", passing_smoke)
    old = make_version(tmp_path, "20200101T000000Z")
    current = make_version(tmp_path, "20200102T000000Z")
    (tmp_path / "CURRENT").write_text(current.name + "\n")
    monkeypatch.setattr(retrain_module, "_train_candidate", fake_trainer(0.41))

    result = retrain(None, tmp_path, tmp_path, GATE, keep=1)  # type: ignore[arg-type]

    assert result.promoted and result.reasons == []
    assert read_pointer(tmp_path, "CURRENT") == result.serving == result.candidate
    assert result.pruned == [old.name]  # the replaced version stays one more cycle
    record = json.loads(result.record.read_text())
    assert result.record == tmp_path / "gate" / f"{result.candidate}.json"
    assert record["promoted"] is True and record["current"] == current.name


def test_refused_candidate_is_kept_and_current_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("training.gate.run_smoke_query", passing_smoke)
    current = make_version(tmp_path, "20200102T000000Z", b_top_100=0.40)
    (tmp_path / "CURRENT").write_text(current.name + "\n")
    monkeypatch.setattr(retrain_module, "_train_candidate", fake_trainer(0.30))

    result = retrain(None, tmp_path, tmp_path, GATE, keep=1)  # type: ignore[arg-type]

    assert not result.promoted and result.serving == current.name
    assert (tmp_path / result.candidate / "manifest.json").exists()
    assert "more than 0.01 below" in json.loads(result.record.read_text())["reasons"][0]


def test_a_second_cycle_cannot_run_while_one_holds_the_lock(tmp_path: Path) -> None:
    with exclusive(tmp_path), pytest.raises(RetrainBusyError, match="another retraining cycle"):
        retrain(None, tmp_path, tmp_path, GATE, keep=1)  # type: ignore[arg-type]


def test_schedule_counts_from_the_newest_version(tmp_path: Path) -> None:
    assert seconds_until_due(tmp_path, 600) == 0.0
    version = make_version(tmp_path, "20260101T000000Z")
    written = (version / "manifest.json").stat().st_mtime
    assert seconds_until_due(tmp_path, 600, now=written + 100) == pytest.approx(500)
    assert seconds_until_due(tmp_path, 600, now=written + 900) == 0.0


# A version that loads but answers NaN, which training never exports, to prove the smoke query catches it.


def test_smoke_query_fails_on_nan_embeddings_and_on_a_missing_model(tmp_path: Path) -> None:
    import tensorflow as tf

    from service.smoke import smoke
    from tests.service.version_factory import HISTORY_LENGTH, build_version, write_manifest

    build_version(tmp_path, "20260103T000000Z", make_current=False)
    version = tmp_path / "20260103T000000Z"
    table = tf.Variable(np.ones((16, 8), np.float32))

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.string, name="user_id"),
            tf.TensorSpec([None], tf.int64, name="timestamp"),
            tf.TensorSpec([None, HISTORY_LENGTH], tf.string, name="history"),
        ]
    )
    def serve(user_id: Any, timestamp: Any, history: Any) -> dict[str, Any]:
        rows = tf.gather(table, tf.strings.to_hash_bucket_fast(user_id, 16))
        return {"embedding": rows * (tf.cast(timestamp, tf.float32)[:, None] * 0.0 + float("nan"))}

    module = tf.Module()
    module.table = table
    shutil.rmtree(version / "query_model")
    tf.saved_model.save(module, str(version / "query_model"), signatures={"serving_default": serve})
    write_manifest(version)
    from service.errors import VersionRejectedError

    with pytest.raises(VersionRejectedError, match=r"not all finite"):  # the server's loader refuses it
        smoke(version, 10, 8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    with pytest.raises(
        SmokeCheckError, match=r"smoke process exited 1: VersionRejectedError: .*does not follow the contract"
    ):
        run_smoke_query(broken, GATE)


def test_a_version_the_gate_passes_is_one_the_server_loads(tiny_version_dir: Path, tmp_path: Path) -> None:
    """The gate's smoke check is the server's own loader: what it passes, a server serves, and vice versa."""
    from service.artifacts import load_version
    from service.errors import VersionRejectedError

    tiny = GATE.model_copy(update={"k": 10})  # top-100 of a 40-movie catalogue is 1.0 for everyone
    decision = decide(tiny_version_dir, None, tiny)
    assert decision.promoted, decision.reasons
    assert decision.checks[-1].name == "metric T.top_10" and "beats most-popular" in decision.checks[-1].detail
    smoke = decision.checks[1]
    assert smoke.figures["neighbours"] == 10 and smoke.figures["recall"] == 1.0  # exact index
    assert load_version(tiny_version_dir, max_batch=4, min_recall=0.8).name == tiny_version_dir.name
    # Checksums made to match, but popularity.npy is no ranking of the movies: the server refuses it, so must the gate.
    broken = Path(shutil.copytree(tiny_version_dir, tmp_path / tiny_version_dir.name))
    np.save(broken / "popularity.npy", np.zeros(40, dtype=np.int32))
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"] = file_checksums(broken)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VersionRejectedError, match=r"popularity\.npy is not a permutation"):
        load_version(broken, max_batch=4, min_recall=0.8)
    decision = decide(broken, None, tiny)
    assert not decision.promoted and "popularity.npy is not a permutation" in decision.reasons[0]


# The real pipeline: the session's tiny trained version (tests/conftest.py), and real scheduled cycles.


def test_the_schedule_survives_a_failed_cycle_and_runs_the_next(
    tmp_path: Path, tiny_data_dir: Path, tiny_models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import TINY_TRAINING
    from training.config import TrainConfig

    config = TrainConfig(**TINY_TRAINING)
    # Same data, seed and split as the current version; the tolerance is wide because 4 epochs on synthetic
    # data say nothing about quality (the metric rule is tested above on hand-made manifests).
    gate = GateConfig(tolerance=1.0, k=10)
    with caplog.at_level(logging.INFO, logger="training.retrain"):
        # Each cycle runs in its own spawned process: one without data fails there, not here.
        retrain_every(0.1, config, tmp_path / "no-data", tmp_path / "empty", gate, keep=1, cycles=1)
    assert "retraining cycle failed (exit code 1)" in caplog.text

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    first = read_pointer(models, "CURRENT")
    os.utime(models / str(first) / "manifest.json", (0, 0))  # the current version is long overdue
    retrain_every(3600, config, tiny_data_dir, models, gate, keep=1, cycles=1)

    candidate = read_pointer(models, "CURRENT")
    assert candidate != first
    record = json.loads((models / "gate" / f"{candidate}.json").read_text())
    assert record["promoted"] and record["current"] == first
    assert [check["name"] for check in record["checks"]] == ["files", "smoke", "index", "metric T.top_10"]
    # No ratings store, so no window after the current cutoff: the candidate had to beat most-popular.
    assert "beats most-popular" in record["checks"][-1]["detail"]
    assert (models / str(first)).is_dir()  # the replaced version is kept one more cycle


def test_a_retrain_learns_the_stored_ratings_and_gates_on_the_window_neither_model_saw(
    tmp_path: Path, tiny_data_dir: Path, tiny_models_dir: Path, synth: Any
) -> None:
    from contract.ratings import Rating, RatingsStore
    from tests.conftest import TINY_TRAINING
    from training.config import TrainConfig

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    first = read_pointer(models, "CURRENT")
    url = f"sqlite:///{tmp_path}/ratings.db"
    rng = np.random.default_rng(5)
    end = int(synth.ratings[:, 3].max())
    new = [  # new users 1001-1030, each rating 3 movies after the data ends
        Rating(str(1000 + u), str(int(m)), 4.0, end + 100 * u + i)
        for u in range(1, 31)
        for i, m in enumerate(rng.choice(40, size=3, replace=False) + 1)
    ]
    with RatingsStore(url) as store:
        store.create_schema()
        ids = store.add(new)

    gate = GateConfig(tolerance=1.0, k=10, min_window=50)
    result = retrain(TrainConfig(**TINY_TRAINING), tiny_data_dir, models, gate, keep=2, ratings_url=url)

    record = json.loads(result.record.read_text())
    check = record["checks"][-1]
    assert check["name"] == "metric T.top_10" and check["ok"], check
    assert check["figures"]["window_after_id"] == 0 and check["figures"]["window_size"] == len(new) == 90
    assert isinstance(check["figures"]["current"], float) and isinstance(check["figures"]["candidate"], float)
    assert f"against {first}'s" in check["detail"] and "on the 90 ratings stored after id 0" in check["detail"]
    manifest = json.loads((models / result.candidate / "manifest.json").read_text())
    assert manifest["data"]["num_stored_ratings"] == 90 and manifest["data"]["ratings_cutoff_id"] == ids[-1]
    assert manifest["metrics"]["temporal"] == {"how": "after_id", "after_id": 0, "test_size": 90}
    seen = np.load(models / result.candidate / "seen.npz")
    assert "1001" in seen["user_ids"].tolist()  # the served refit learnt the new users
