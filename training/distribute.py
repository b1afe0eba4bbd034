"""The tf.distribute strategy a training run uses, and whether this process is the one that exports.

- `multi_worker`: MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (one process per host, same
  command everywhere; gradients are all-reduced each step, each worker reads its shard of every batch).
- `mirrored`: MirroredStrategy over this host's GPUs.
- `default`: no distribution (one device).
- `auto`: multi_worker when TF_CONFIG names more than one task, mirrored with more than one GPU, else default.

Every worker runs the whole job in lockstep (the fits' collective ops need all of them); only the chief's
export goes to the models directory and is promoted. The strategy must be created before TensorFlow runs
anything else in the process, which is why `train_versions` creates it first.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import tensorflow as tf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """This process's place in TF_CONFIG's cluster (a lone process: one task, the chief)."""

    task_type: str
    task_index: int
    num_tasks: int
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        """The `chief` task if the cluster names one, else worker 0 (TensorFlow's own convention)."""
        if self.has_chief_task:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0


def cluster_from_env(environ: dict[str, str] | None = None) -> Cluster:
    """Reads TF_CONFIG ({"cluster": {"worker": [...]}, "task": {"type": "worker", "index": 0}})."""
    raw = (environ if environ is not None else dict(os.environ)).get("TF_CONFIG", "")
    if not raw.strip():
        return Cluster("worker", 0, 1)
    try:
        spec = json.loads(raw)
        tasks = spec["cluster"]
        task = spec["task"]
        kind, index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG is not a cluster spec with a task ({exc}): {raw[:200]!r}") from None
    num_tasks = sum(len(addresses) for name, addresses in tasks.items() if name in ("chief", "worker"))
    return Cluster(kind, index, num_tasks, has_chief_task="chief" in tasks)


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The strategy for `kind` (see the module docstring); `auto` decides from TF_CONFIG and the GPUs."""
    if kind == "auto":
        if cluster_from_env().num_tasks > 1:
            kind = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi_worker":
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    log.info("training under %s (%s) with %d replica(s)", kind, type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def agreed_minimum(strategy: tf.distribute.Strategy, value: int) -> int:
    """The smallest of every worker's `value`, the same on each; `value` itself in a single process.

    Workers that train on a live ratings store each read its newest id when they start, a few milliseconds
    apart; a rating committed in between would give them different data and a different number of steps,
    and the lockstep fit would hang or diverge. The smallest id was committed before every worker read it,
    so all of them can train on exactly the ratings up to it.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value  # one process: MirroredStrategy's replicas share this process's value
    local = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([value], tf.int64))
    return int(tf.reduce_min(strategy.gather(local, axis=0)).numpy())
