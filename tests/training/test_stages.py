"""The stage log that the scale benchmark reads: each stage's time and memory, in the order they ran."""

from __future__ import annotations

import logging
import re
import time

import numpy as np
import pytest

from training.stages import StageLog, peak_rss_mb, rss_mb


def test_each_stage_records_its_time_and_the_memory_it_needed() -> None:
    log = StageLog()
    with log.stage("sleep"):
        time.sleep(0.05)
    with log.stage("allocate"):
        block = np.ones(64 * 2**20 // 8)  # 64 MB, touched
        block.sum()
    sleep, allocate = log.stages
    assert [s["name"] for s in log.as_rows()] == ["sleep", "allocate"]
    assert 0.05 <= sleep.seconds < 5
    assert allocate.rss_mb >= sleep.rss_mb + 60  # the block is still held when the stage ends
    assert allocate.peak_rss_mb >= allocate.rss_mb - 1 and peak_rss_mb() >= rss_mb() - 1
    del block


def test_each_stage_is_a_line_as_it_starts_and_as_it_ends_or_fails(caplog: pytest.LogCaptureFixture) -> None:
    log = StageLog()
    with caplog.at_level(logging.INFO, logger="training.stages"):
        with log.stage("load"):
            pass
        with pytest.raises(ValueError), log.stage("fit"):
            raise ValueError("bad")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "stage load: started"
    assert re.fullmatch(r"stage load: \d+\.\d s, RSS \d+ MB, peak \d+ MB", lines[1])
    assert lines[2] == "stage fit: started"
    assert re.fullmatch(r"stage fit: failed after \d+\.\d s", lines[3])
    assert [s.name for s in log.stages] == ["load"]  # a failed stage records no figures
