"""Fetching MovieLens: GroupLens with checksum, the RecBole fallback, and clear failures (no network used)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.synth import Synth, write_layout
from training import fetch as fetch_module
from training.data import load_movielens
from training.fetch import FetchError, fetch


def _grouplens_mirror(tmp_path: Path, synth: Synth, md5: str | None = None) -> str:
    """A local file:// stand-in for files.grouplens.org holding ml-100k.zip and its .md5."""
    mirror = tmp_path / "mirror"
    source = write_layout(synth, tmp_path / "src" / "ml-100k", "ml-100k")
    mirror.mkdir()
    archive = mirror / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in source.iterdir():
            zipped.write(path, f"ml-100k/{path.name}")
    digest = md5 or hashlib.md5(archive.read_bytes()).hexdigest()
    (mirror / "ml-100k.zip.md5").write_text(f"{digest}  ml-100k.zip\n")
    return mirror.as_uri()


def test_fetches_and_verifies_from_grouplens(tmp_path: Path, synth: Synth) -> None:
    url = _grouplens_mirror(tmp_path, synth)
    target = fetch("ml-100k", tmp_path / "data", base_url=url, log=lambda m: None)
    assert target == tmp_path / "data" / "ml-100k"
    assert load_movielens(tmp_path / "data").layout == "ml-100k"
    # Second call: already there, nothing downloaded (the mirror is gone).
    (tmp_path / "mirror" / "ml-100k.zip").unlink()
    assert fetch("ml-100k", tmp_path / "data", base_url=url, log=lambda m: None) == target


def test_checksum_mismatch_is_refused(tmp_path: Path, synth: Synth) -> None:
    url = _grouplens_mirror(tmp_path, synth, md5="0" * 32)
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch("ml-100k", tmp_path / "data", base_url=url, log=lambda m: None)
    assert not (tmp_path / "data" / "ml-100k").exists()


def test_unreachable_grouplens_falls_back_to_recbole_for_ml_100k(
    tmp_path: Path, synth: Synth, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_layout(synth, tmp_path / "src", "recbole")
    wheel = tmp_path / "recbole.whl"
    with zipfile.ZipFile(wheel, "w") as zipped:
        for name in ("ml-100k.inter", "ml-100k.item"):
            zipped.write(source / name, f"recbole/dataset_example/ml-100k/{name}")
    monkeypatch.setattr(fetch_module, "download_recbole_wheel", lambda directory: wheel)
    messages: list[str] = []
    fetch("ml-100k", tmp_path / "data", base_url=(tmp_path / "offline").as_uri(), log=messages.append)
    assert "RecBole" in messages[-1]
    assert load_movielens(tmp_path / "data").layout == "recbole"


def test_other_datasets_fail_with_a_remedy(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not reach GroupLens .*ml-1m.zip yourself"):
        fetch("ml-1m", tmp_path / "data", base_url=(tmp_path / "offline").as_uri(), log=lambda m: None)
    with pytest.raises(FetchError, match="unknown dataset 'ml-7'"):
        fetch("ml-7", tmp_path / "data")
