"""The tutorial's figure: held-out top-100 accuracy against epoch, one line per trained run."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI
import matplotlib.pyplot as plt

CURVE_EPOCHS, CURVE_VALUES = "held_out_epoch", "held_out_A_top_100"


def training_curve_png(runs: dict[str, dict[str, list[float]]]) -> bytes:
    """PNG bytes of held-out top-100 accuracy (protocol A) per epoch; `runs` maps a label to a training log.

    A training log holds "held_out_epoch" (1-based epochs that were evaluated) and "held_out_A_top_100".
    """
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, training_log in runs.items():
        axes.plot(training_log.get(CURVE_EPOCHS, []), training_log.get(CURVE_VALUES, []), label=label)
    axes.set_title("Accuracy vs epoch (protocol A, held-out ratings)")
    axes.set_xlabel("epoch")
    axes.set_ylabel("top-100 accuracy")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
