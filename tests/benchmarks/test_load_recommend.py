"""The load benchmark's CPU readings (benchmarks/load_recommend.py): the event loop's thread apart from the rest."""

from __future__ import annotations

import os
import threading
import time

from benchmarks.load_recommend import cpu_seconds, cpu_ticks, main_thread_cpu_seconds


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_main_threads_cpu_leaves_out_what_other_threads_spend() -> None:
    pid = os.getpid()
    process, main = cpu_seconds(pid), main_thread_cpu_seconds(pid)
    worker = threading.Thread(target=_spin, args=(0.5,))
    worker.start()
    worker.join()  # the main thread waits, spending nothing
    assert cpu_seconds(pid) - process >= 0.4
    assert main_thread_cpu_seconds(pid) - main < 0.1
    main = main_thread_cpu_seconds(pid)
    _spin(0.5)
    assert main_thread_cpu_seconds(pid) - main >= 0.4


def test_the_idle_ticks_are_part_of_all_ticks_and_only_grow() -> None:
    idle, total = cpu_ticks()
    time.sleep(0.2)
    later_idle, later_total = cpu_ticks()
    assert 0 <= idle <= total and later_idle >= idle and later_total > total
