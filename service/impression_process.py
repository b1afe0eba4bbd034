"""The impressions writer's own process: it stores the answers the server queues, away from the server's GIL.

Storing a batch of impressions is mostly Python holding the interpreter lock (building rows, binding nine
parameters a row, the coverage bookkeeping). In a thread of the server it stalled the event loop for as long:
at concurrency 64 the server kept 0.87 of its req/s without impressions, and 0.97 with the writer thread
emptying its queue without storing anything (docs/serving-speed.md). So the server's writer thread only
serialises each batch (orjson) and sends it down a pipe to this process, which builds the Impressions, stores
them with contract.impressions.ImpressionStore.add, and answers how many it wrote or why it could not.

Frames, both ways: a 4-byte big-endian length, then orjson. The first frame to the process is its store's URL
(not on the command line, where `ps` would show a password). It exits when its input closes: the server
stopped, or died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from contract.impressions import Impression, ImpressionStore, ImpressionStoreError
from contract.ratings import RatingsStore, RatingsStoreError

log = logging.getLogger(__name__)

# What the server queues for each answer: Impression's fields in order (recommendation_id, user_id, version,
# shown_at, movie_ids, personalised) as a plain tuple, the movie ids joined by spaces
# (service.impressions.ImpressionWriter.stamp says why).
Queued = tuple[str, str, str, int, str, bool]

_LENGTH = struct.Struct(">I")
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # where `service` and `contract` are importable


def queued_impression(queued: Sequence[Any]) -> Impression:
    """The Impression a queued tuple (or its JSON list) stands for."""
    recommendation_id, user_id, version, shown_at, movie_ids, personalised = queued
    shown = tuple(movie_ids.split(" ")) if movie_ids else ()
    return Impression(recommendation_id, user_id, version, int(shown_at), shown, bool(personalised))


def write_frame(stream: IO[bytes], value: Any) -> None:
    data = orjson.dumps(value)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame's value, or None at the end of the stream (a frame cut short counts as the end)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return orjson.loads(data) if len(data) == size else None


class WriterProcess:
    """The server's handle on the writer process: started on first use, and again after it has exited.

    Only the calling thread (the server's writer thread) waits for it, with the GIL released while it does.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    def store(self, batch: Sequence[Queued]) -> int:
        """Store the queued answers; returns how many were written.

        Raises:
            ImpressionStoreError: the store refused them, or the process could not take them (it is started
                again on the next call, unless closed); either way the batch is lost.
        """
        if self._closed:
            raise ImpressionStoreError("the impressions writer process was closed")
        process = self._running()
        try:
            assert process.stdin is not None and process.stdout is not None
            write_frame(process.stdin, batch)
            reply = read_frame(process.stdout)
        except (OSError, ValueError):  # a closed or broken pipe: the process died, or close() ran
            reply = None
        if reply is None:
            code = self._reap()
            raise ImpressionStoreError(f"the impressions writer process stopped (exit code {code})")
        if "error" in reply:
            raise ImpressionStoreError(str(reply["error"]))
        return int(reply["written"])

    def close(self, seconds: float = 5.0) -> None:
        """End the process once it has stored what it was given (killed if it takes over `seconds`); later
        batches are refused."""
        self._closed = True
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(seconds)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._reap()
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _PACKAGE_ROOT if not path else f"{_PACKAGE_ROOT}{os.pathsep}{path}"}
        process = subprocess.Popen(
            [sys.executable, "-m", "service.impression_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert process.stdin is not None
        write_frame(process.stdin, {"url": self._url})
        self._process = process
        return process

    def _reap(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        process.kill()
        return process.wait()


def serve(reader: IO[bytes], writer: IO[bytes]) -> None:
    """The process's loop: each frame of queued answers stored, each answered with {"written": n} or {"error"}.

    A store that cannot be opened or refuses a batch costs that batch only: the next one tries again.
    """
    first = read_frame(reader)
    if first is None:
        return
    url = str(first["url"])
    store: ImpressionStore | None = None
    while (rows := read_frame(reader)) is not None:
        reply: dict[str, Any]
        try:
            if store is None:
                store = ImpressionStore(RatingsStore(url))
            store.add([queued_impression(row) for row in rows])
            reply = {"written": len(rows)}
        except RatingsStoreError as e:  # ImpressionStoreError is one: the store refused or is down
            reply = {"error": str(e)}
        except Exception as e:  # anything else costs this batch, never the process
            log.exception("storing %d impressions failed", len(rows))
            reply = {"error": f"{type(e).__name__}: {e}"}
        write_frame(writer, reply)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s impression-writer: %(message)s")
    # A Ctrl-C reaches the terminal's whole process group: the server stops on it and closes the pipe once it
    # has sent what is queued, which this process stores before it ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError):  # the server went away mid-batch: nobody is left to answer
        serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
