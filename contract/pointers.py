"""Names under models/: version names, the pointer files CURRENT and PROTECTED, staging names, and their rules.

Servers poll CURRENT and the retrainer moves it, so both read it with `read_pointer` and the same name rule.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from contract.manifest import MANIFEST

CURRENT = "CURRENT"  # the version servers serve
PROTECTED = "PROTECTED"  # a version the retrainer never prunes (a rollback target); not a serving pin
CANARY = "CANARY"  # a version servers serve beside CURRENT to a share of users (RECSYS_CANARY_SHARE)
TMP_PREFIX = ".tmp-"  # staging names under models/: never a version, removed by the pruner once stale
# A plain directory name (no path tricks); exported names are UTC timestamps, e.g. 20261122T103000Z.001
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class PointerError(ValueError):
    """A pointer file exists but cannot be read or does not name a version; the message says which."""


def read_pointer(models_dir: Path, name: str) -> str | None:
    """The version a pointer file (CURRENT or PROTECTED) names, or None when the file is absent.

    Raises:
        PointerError: unreadable (a directory, bad permissions, not UTF-8), blank, or not a version name. The
            writers here never leave a blank file (temp file, then rename), so a blank one is a mistake too.
    """
    path = models_dir / name
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise PointerError(f"{path} is not UTF-8 text; write a version name into it") from None
    except OSError as error:
        raise PointerError(f"{path} cannot be read ({error.strerror}); it must be a file naming a version") from None
    version = text.strip()
    if not version:
        raise PointerError(f"{path} is empty; write a version name into it (python -m training promote VERSION)")
    if not VERSION_NAME.fullmatch(version):
        raise PointerError(f"{path} holds {version[:80]!r}, not a version name (letters, digits, '.', '_', '-')")
    return version


def promote(models_dir: Path, version: str, protect: bool = False) -> None:
    """Points CURRENT (and with `protect`, PROTECTED) at `version` with an atomic rename: the fleet-wide rollback too.

    Raises:
        FileNotFoundError: `version` is not a complete version (no manifest).
    """
    if not VERSION_NAME.fullmatch(version) or not (models_dir / version / MANIFEST).is_file():
        raise FileNotFoundError(f"{models_dir / version} is not a complete version (no {MANIFEST})")
    if protect:
        _write_pointer(models_dir, PROTECTED, version)
    _write_pointer(models_dir, CURRENT, version)


def set_canary(models_dir: Path, version: str) -> None:
    """Points CANARY at `version` (atomic rename): every server polling it serves it to its canary share.

    Raises:
        FileNotFoundError: `version` is not a complete version (no manifest).
    """
    if not VERSION_NAME.fullmatch(version) or not (models_dir / version / MANIFEST).is_file():
        raise FileNotFoundError(f"{models_dir / version} is not a complete version (no {MANIFEST})")
    _write_pointer(models_dir, CANARY, version)


def clear_canary(models_dir: Path) -> None:
    """Removes CANARY (if present): servers stop serving a canary at their next poll."""
    try:
        (models_dir / CANARY).unlink()
    except FileNotFoundError:
        return
    fsync_dir(models_dir)


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


def new_version_name(models_dir: Path, now: datetime | None = None) -> str:
    """A UTC timestamp, so names sort in time order; a zero-padded suffix keeps versions of one second apart.

    Zero padding keeps the order: `.002` sorts before `.010`, where `.2` would sort after `.10`.
    """
    base = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while (models_dir / name).exists():
        name, n = f"{base}.{n:03d}", n + 1
    return name


def list_versions(models_dir: Path) -> list[str]:
    """Complete versions (directories with a manifest), oldest first: names sort in time order."""
    return sorted(
        entry.name
        for entry in models_dir.iterdir()
        if entry.is_dir() and VERSION_NAME.fullmatch(entry.name) and (entry / MANIFEST).is_file()
    )
