"""Handing a finished fit's memory back before the next one starts.

A fit leaves its model, optimizer and input pipeline (the shuffle buffer holds up to a million examples) in
reference cycles that Python frees only at a full collection, and glibc keeps much of what is freed in its
arenas, so without this the process's baseline grew from fit to fit (measured in docs/scale.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)


def release_memory() -> None:
    """A full collection, then glibc's malloc_trim (where the C library has one) to return free pages."""
    gc.collect()
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): the collection is all there is
        log.debug("no malloc_trim in %s", name)
