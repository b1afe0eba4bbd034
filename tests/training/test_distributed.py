"""Training across machines: two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from service.artifacts import load_version
from tests.conftest import TINY_TRAINING
from training.distribute import Cluster, cluster_from_env


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _options() -> list[str]:
    options = []
    for name, value in TINY_TRAINING.items():
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        options += [f"--{name.replace('_', '-')}", text]
    return options


def test_tf_config_names_the_chief() -> None:
    assert cluster_from_env({}) == Cluster("worker", 0, 1)
    workers = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    second = cluster_from_env({"TF_CONFIG": json.dumps(workers)})
    assert second.num_tasks == 2 and not second.is_chief
    first = cluster_from_env({"TF_CONFIG": json.dumps({**workers, "task": {"type": "worker", "index": 0}})})
    assert first.is_chief
    with_chief = {"cluster": {"chief": ["c:3"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert cluster_from_env({"TF_CONFIG": json.dumps(with_chief)}).num_tasks == 2
    assert not cluster_from_env({"TF_CONFIG": json.dumps(with_chief)}).is_chief  # worker 0 is not the chief here
    with pytest.raises(ValueError, match="TF_CONFIG is not a cluster spec"):
        cluster_from_env({"TF_CONFIG": '{"cluster": {}}'})


@pytest.mark.slow
def test_two_workers_train_one_version_that_serves(tiny_data_dir: Path, tiny_version_dir: Path, tmp_path: Path) -> None:
    """The same command on both workers; only the chief exports (into the shared models dir) and promotes."""
    models = tmp_path / "models"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index in (0, 1):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "training", "train", "--data-dir", str(tiny_data_dir)]
        command += ["--models-dir", str(models), "--no-progress", "--distribute", "multi_worker", *_options()]
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"}
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert "training under multi_worker (CollectiveAllReduceStrategy) with 2 replica(s)" in outputs[0][1]
    assert outputs[1][0].strip().endswith("the chief, which exports and promotes")

    versions = [p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert [v.name for v in versions] == [(models / "CURRENT").read_text().strip()]
    assert outputs[0][0].strip().splitlines()[-1] == str(versions[0])

    version = load_version(versions[0], max_batch=8, min_recall=0.8)
    known = version.movies[0]["movie_id"]
    for when in (885_000_000, int(time.time())):  # a 1998-era query and one at now
        embedding = version.served_queries(version.embed(["1"], [when], [[known]]), [None])
        rows, _ = version.search(embedding, 10)
        assert np.isfinite(embedding).all() and len(set(rows[0].tolist())) == 10

    # The same configuration on one worker (the shared tiny version): metrics in line, both above most-popular.
    two = json.loads((versions[0] / "manifest.json").read_text())["metrics"]
    one = json.loads((tiny_version_dir / "manifest.json").read_text())["metrics"]
    for protocol in ("A", "B", "T"):
        assert abs(two["model"][protocol]["top_10"] - one["model"][protocol]["top_10"]) < 0.1
    assert two["model"]["B"]["top_10"] > two["most_popular"]["B"]["top_10"]


AGREE = """
import sys
from training.distribute import agreed_minimum, make_strategy
strategy = make_strategy("multi_worker")
print("agreed", agreed_minimum(strategy, int(sys.argv[1])))
"""


@pytest.mark.slow
def test_workers_agree_on_the_smallest_cutoff() -> None:
    """Each worker read a different newest id from a live store; both train up to the smallest."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    workers = []
    for index, newest in ((0, 1_000_007), (1, 1_000_003)):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CONFIG": tf_config, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-c", AGREE, str(newest)]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
    assert [out.strip().splitlines()[-1] for out, _ in outputs] == ["agreed 1000003", "agreed 1000003"]
