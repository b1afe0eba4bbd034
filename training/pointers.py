"""The pointer files beside the versions: models/CURRENT (what servers serve) and models/PINNED (never pruned).

Free of TensorFlow, so that the retraining scheduler can read and move them without loading a model stack.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from training.checksums import MANIFEST

CURRENT = "CURRENT"
PINNED = "PINNED"
TMP_PREFIX = ".tmp-"  # staging names under models/: never a version, removed by the pruner once stale


def read_pointer(models_dir: Path, name: str) -> str | None:
    """The version a pointer file (CURRENT or PINNED) names, or None when the file is absent or empty.

    Raises:
        ValueError: the file names something that is not a plain directory name.
    """
    try:
        version = (models_dir / name).read_text().strip()
    except FileNotFoundError:
        return None
    if version and (version.startswith(".") or "/" in version or os.sep in version):
        raise ValueError(f"{models_dir / name} holds {version!r}, not a version name")
    return version or None


def promote(models_dir: Path, version: str, pin: bool = False) -> None:
    """Points models/CURRENT (and with `pin`, models/PINNED) at `version` with an atomic rename.

    Servers poll CURRENT, so this is also the fleet-wide rollback; PINNED keeps the retrainer from pruning it.
    """
    if not (models_dir / version / MANIFEST).is_file():
        raise FileNotFoundError(f"{models_dir / version} is not a complete version (no {MANIFEST})")
    if pin:
        _write_pointer(models_dir, PINNED, version)
    _write_pointer(models_dir, CURRENT, version)


def _write_pointer(models_dir: Path, name: str, version: str) -> None:
    """A reader sees the old name or the new one, never a partial file."""
    tmp = models_dir / f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(version + "\n")
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, models_dir / name)
    fsync_dir(models_dir)


def fsync_dir(directory: Path) -> None:
    """Makes a rename in `directory` durable, not just visible."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
