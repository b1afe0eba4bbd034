"""Per-epoch evaluation on the held-out ratings, and progress: a bar on a terminal, one log line per epoch elsewhere."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import tensorflow as tf
from tqdm.auto import tqdm

from training.evaluate import KS, Table

log = logging.getLogger(__name__)
Evaluate = Callable[[], dict[str, Table]]


class EpochProgress(tf.keras.callbacks.Callback):
    """Evaluates at the given epochs and keeps a compact training log: loss, evaluated epochs, held-out top-k (A and B).

    The figures are measured on the fold's held-out ratings (test or validation: `held_out_*`), by the same
    NumPy evaluation as the final metrics, instead of Keras' validation loop: TFRS's streaming top-k over every
    movie is several times slower a pass.

    With `enabled`, progress goes to `stream` (stderr when not given) as a tqdm bar when it is a terminal, and
    otherwise (CI, `docker logs`, a redirect to a file) as one INFO line per epoch: a bar redrawn with carriage
    returns is one unreadable line in a log.
    """

    def __init__(
        self,
        epochs: int,
        label: str,
        evaluate: Evaluate,
        evaluate_at: set[int],
        enabled: bool = True,
        stream: TextIO | None = None,
    ):
        super().__init__()
        self.epochs = epochs
        self.label = label
        self.evaluate = evaluate
        self.evaluate_at = evaluate_at
        stream = sys.stderr if stream is None else stream
        on_terminal = stream.isatty()
        self.lines = enabled and not on_terminal
        self.bar = tqdm(
            total=epochs, desc=label, unit="epoch", file=stream, disable=not (enabled and on_terminal), leave=True
        )
        self.training_log: dict[str, list[float]] = {"loss": [], "held_out_epoch": []}
        for k in KS:
            self.training_log[f"held_out_A_top_{k}"] = []
            self.training_log[f"held_out_B_top_{k}"] = []
        self._epoch_started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.training_log["loss"].append(float((logs or {}).get("loss", float("nan"))))
        figures = {"loss": f"{self.training_log['loss'][-1]:.1f}"}
        evaluated = epoch + 1 in self.evaluate_at
        if evaluated:
            tables = self.evaluate()
            self.training_log["held_out_epoch"].append(epoch + 1)
            for k in KS:
                for protocol in ("A", "B"):
                    self.training_log[f"held_out_{protocol}_top_{k}"].append(tables[protocol][f"top_{k}"])
        if self.training_log["held_out_epoch"]:  # the bar keeps the latest evaluation; a line shows only its own
            figures["held_out_A_top_10"] = f"{self.training_log['held_out_A_top_10'][-1]:.3f}"
            figures["held_out_A_top_100"] = f"{self.training_log['held_out_A_top_100'][-1]:.3f}"
        if self.lines:
            seconds = time.perf_counter() - self._epoch_started
            shown = figures if evaluated else {"loss": figures["loss"]}
            text = "".join(f", {name} {value}" for name, value in shown.items())
            log.info("%s: epoch %d/%d, %.1f s%s", self.label, epoch + 1, self.epochs, seconds, text)
        self.bar.set_postfix(figures)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.bar.close()
