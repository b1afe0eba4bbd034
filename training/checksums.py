"""sha256 of a version's files: written into the manifest at export, checked again by the gate.

Kept free of TensorFlow so that the retraining scheduler, which only gates and prunes, stays small.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, streamed (model files can be large)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory` except the manifest, keyed by POSIX relative path."""
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    }
