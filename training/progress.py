"""Per-epoch evaluation on the held-out ratings, and a progress bar showing loss and the latest figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tqdm.auto import tqdm

from training.evaluate import KS, Table

Evaluate = Callable[[], dict[str, Table]]


class EpochProgress(tf.keras.callbacks.Callback):
    """Evaluates at the given epochs and keeps a compact history: loss, evaluated epochs, test top-k (A and B).

    The figures are measured on the held-out test ratings (hence `test_*`), by the same NumPy evaluation as the
    final metrics, instead of Keras' validation loop: TFRS's streaming top-k over every movie took ~5 s a pass
    on 2 cores, the NumPy pass well under one.
    """

    def __init__(self, epochs: int, label: str, evaluate: Evaluate, evaluate_at: set[int], enabled: bool = True):
        super().__init__()
        self.evaluate = evaluate
        self.evaluate_at = evaluate_at
        self.bar = tqdm(total=epochs, desc=label, unit="epoch", disable=not enabled, leave=True)
        self.history: dict[str, list[float]] = {"loss": [], "test_epoch": []}
        for k in KS:
            self.history[f"test_A_top_{k}"] = []
            self.history[f"test_B_top_{k}"] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.history["loss"].append(float((logs or {}).get("loss", float("nan"))))
        postfix = {"loss": f"{self.history['loss'][-1]:.1f}"}
        if epoch + 1 in self.evaluate_at:
            tables = self.evaluate()
            self.history["test_epoch"].append(epoch + 1)
            for k in KS:
                for protocol in ("A", "B"):
                    self.history[f"test_{protocol}_top_{k}"].append(tables[protocol][f"top_{k}"])
        if self.history["test_epoch"]:
            postfix["test_A_top_10"] = f"{self.history['test_A_top_10'][-1]:.3f}"
            postfix["test_A_top_100"] = f"{self.history['test_A_top_100'][-1]:.3f}"
        self.bar.set_postfix(postfix)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.bar.close()
