"""The checksum rule of a version: sha256 of every file but the manifest, keyed by relative POSIX path."""

from __future__ import annotations

import hashlib
from pathlib import Path

from contract.manifest import MANIFEST


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed (model files can be large)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).as_posix() != MANIFEST)


def file_checksums(directory: Path) -> dict[str, str]:
    """What the exporter records in the manifest's `files`."""
    return {path.relative_to(directory).as_posix(): sha256_file(path) for path in _files(directory)}


def file_problems(directory: Path, listed: dict[str, str]) -> list[str]:
    """How the files on disk differ from `listed` (missing, extra, changed); empty when they match."""
    on_disk = {path.relative_to(directory).as_posix() for path in _files(directory)}
    missing = sorted(listed.keys() - on_disk)
    extra = sorted(on_disk - listed.keys())
    changed = [name for name in sorted(listed.keys() & on_disk) if sha256_file(directory / name) != listed[name]]
    return [
        f"{label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for label, names in (("missing", missing), ("not in manifest", extra), ("sha256 differs", changed))
        if names
    ]
