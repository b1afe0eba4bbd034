"""A per-epoch progress bar that shows the loss and the latest validation figures."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from tqdm.auto import tqdm

from training.model import METRIC_KS

TFRS_METRIC = "val_factorized_top_k/top_{k}_categorical_accuracy"


class EpochProgress(tf.keras.callbacks.Callback):
    """tqdm bar over epochs; also gathers a compact history (loss, validated epochs, val top-k)."""

    def __init__(self, epochs: int, label: str, enabled: bool = True):
        super().__init__()
        self.bar = tqdm(total=epochs, desc=label, unit="epoch", disable=not enabled, leave=True)
        self.history: dict[str, list[float]] = {"loss": [], "val_epoch": []}
        self.history.update({f"val_top_{k}": [] for k in METRIC_KS})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        self.history["loss"].append(float(logs.get("loss", float("nan"))))
        postfix = {"loss": f"{self.history['loss'][-1]:.1f}"}
        if TFRS_METRIC.format(k=100) in logs:
            self.history["val_epoch"].append(epoch + 1)
            for k in METRIC_KS:
                self.history[f"val_top_{k}"].append(float(logs[TFRS_METRIC.format(k=k)]))
        if self.history["val_epoch"]:
            postfix["val_top_10"] = f"{self.history['val_top_10'][-1]:.3f}"
            postfix["val_top_100"] = f"{self.history['val_top_100'][-1]:.3f}"
        self.bar.set_postfix(postfix)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.bar.close()
