"""Wall time and memory of each stage of a training run, so that cost at scale can be read stage by stage.

The offline job's cost grows with the data in different places (loading, histories, fitting, scoring,
export); `train_versions` marks each stage here, the log shows each as it starts and ends, and the scale
benchmark reports them. Memory is the process's resident set: `rss_mb` when the stage ended and
`peak_rss_mb`, the high-water mark so far (the kernel keeps only one), so the first stage whose peak jumps is
the one that needed the memory.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
_PAGE_MB = resource.getpagesize() / 2**20


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    rss_mb: float
    peak_rss_mb: float


def rss_mb() -> float:
    """The resident set now, from /proc (0 where there is none)."""
    statm = Path("/proc/self/statm")
    return int(statm.read_text().split()[1]) * _PAGE_MB if statm.exists() else 0.0


def peak_rss_mb() -> float:
    """The process's resident-set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class StageLog:
    """Stages in the order they ran; each is logged at INFO as it starts and as it ends (or fails).

    A line each, so that a log with no terminal (CI, `docker logs`) says which stage a long run is in.
    """

    stages: list[Stage] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("stage %s: started", name)
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            log.info("stage %s: failed after %.1f s", name, time.perf_counter() - started)
            raise
        done = Stage(name, round(time.perf_counter() - started, 3), round(rss_mb()), round(peak_rss_mb()))
        self.stages.append(done)
        log.info("stage %s: %.1f s, RSS %d MB, peak %d MB", name, done.seconds, done.rss_mb, done.peak_rss_mb)

    def as_rows(self) -> list[dict[str, object]]:
        return [asdict(s) for s in self.stages]
