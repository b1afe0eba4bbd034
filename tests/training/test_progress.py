"""Training progress: a tqdm bar on a terminal, one plain log line per epoch anywhere else."""

from __future__ import annotations

import io
import logging
import re

import pytest

from training.evaluate import KS
from training.progress import EpochProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _tables() -> dict[str, dict[str, float]]:
    return {protocol: {f"top_{k}": k / 1000 for k in KS} for protocol in ("A", "B")}


def _run(progress: EpochProgress, epochs: int) -> None:
    for epoch in range(epochs):
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch, {"loss": 600.0 - epoch})
    progress.on_train_end()


def test_off_a_terminal_each_epoch_is_one_plain_line(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    progress = EpochProgress(3, "layers=32", _tables, evaluate_at={2}, stream=stream)
    with caplog.at_level(logging.INFO, logger="training.progress"):
        _run(progress, 3)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert re.fullmatch(r"layers=32: epoch 1/3, \d+\.\d s, loss 600\.0", lines[0])
    evaluated = r"layers=32: epoch 2/3, \d+\.\d s, loss 599\.0, held_out_A_top_10 0\.010, held_out_A_top_100 0\.100"
    assert re.fullmatch(evaluated, lines[1])
    assert re.fullmatch(r"layers=32: epoch 3/3, \d+\.\d s, loss 598\.0", lines[2])  # an evaluation is shown once
    assert stream.getvalue() == ""  # no bar
    assert progress.training_log["loss"] == [600.0, 599.0, 598.0] and progress.training_log["held_out_epoch"] == [2]


def test_on_a_terminal_the_bar_and_no_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="training.progress"):
        _run(EpochProgress(2, "layers=32", _tables, evaluate_at=set(), stream=stream), 2)
    assert not caplog.records
    assert "layers=32: 100%" in stream.getvalue() and "2/2" in stream.getvalue()


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["log", "terminal"])
def test_disabled_shows_nothing(stream: io.StringIO, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="training.progress"):
        _run(EpochProgress(2, "layers=32", _tables, evaluate_at=set(), enabled=False, stream=stream), 2)
    assert not caplog.records and stream.getvalue() == ""
