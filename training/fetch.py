"""Gets MovieLens onto disk: GroupLens with checksum, or ml-100k from the RecBole wheel on PyPI."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from training.data import detect_layout

GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class Source:
    """A GroupLens archive and the folder it unpacks to."""

    archive: str
    folder: str


DATASETS = {
    "ml-100k": Source("ml-100k.zip", "ml-100k"),
    "ml-1m": Source("ml-1m.zip", "ml-1m"),
    "ml-10m": Source("ml-10m.zip", "ml-10M100K"),
    "ml-20m": Source("ml-20m.zip", "ml-20m"),
    "ml-25m": Source("ml-25m.zip", "ml-25m"),
    "ml-32m": Source("ml-32m.zip", "ml-32m"),
    "ml-latest-small": Source("ml-latest-small.zip", "ml-latest-small"),
}

# RecBole ships the real ML-100K in its wheel; we read two files out of it and never install it (it pulls torch).
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_FILES = ("ml-100k.inter", "ml-100k.item")
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"


class FetchError(RuntimeError):
    """MovieLens could not be fetched; the message says what to do instead."""


def fetch(
    dataset: str,
    data_dir: Path,
    base_url: str = GROUPLENS,
    timeout: float = 30.0,
    verify: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Puts `dataset` under data_dir/<dataset>/ and returns that folder; a no-op if it is already there.

    GroupLens first, checked against the .md5 it publishes beside each archive. If GroupLens cannot be
    reached, ml-100k falls back to the copy inside the RecBole wheel on PyPI.
    """
    if dataset not in DATASETS:
        raise FetchError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    target = data_dir / dataset
    if target.is_dir() and detect_layout(target):
        log(f"{dataset} already in {target}")
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        _fetch_grouplens(DATASETS[dataset], f"{base_url}/{DATASETS[dataset].archive}", target, timeout, verify)
        log(f"fetched {dataset} from GroupLens into {target}")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        if dataset != "ml-100k":
            raise FetchError(
                f"could not reach GroupLens ({exc}); download {base_url}/{DATASETS[dataset].archive} "
                f"yourself and unzip it into {data_dir}"
            ) from exc
        log(f"GroupLens unreachable ({exc}); using the ml-100k copy in the RecBole wheel from PyPI")
        with tempfile.TemporaryDirectory() as tmp:
            extract_recbole(download_recbole_wheel(Path(tmp)), target)
    return target


def _fetch_grouplens(source: Source, url: str, target: Path, timeout: float, verify: bool) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / source.archive
        with urllib.request.urlopen(url, timeout=timeout) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        if verify:
            with urllib.request.urlopen(url + ".md5", timeout=timeout) as response:
                expected = response.read().decode().split()[0].lower()
            actual = _digest(archive, "md5")
            if actual != expected:
                raise FetchError(f"{url}: checksum mismatch (md5 {actual}, GroupLens says {expected}); try again")
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise FetchError(f"{url}: not a valid zip archive ({exc}); try again") from exc
        unpacked = Path(tmp) / source.folder
        if not detect_layout(unpacked):
            raise FetchError(f"{url}: the archive has no MovieLens files under {source.folder}/")
        _replace_dir(unpacked, target)


def download_recbole_wheel(directory: Path) -> Path:
    """`pip download --no-deps recbole==1.2.1`, then checks the wheel's sha256 against the pinned one."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "recbole==1.2.1", "-d", str(directory)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = directory / RECBOLE_WHEEL
    if result.returncode != 0 or not wheel.is_file():
        raise FetchError(
            "could not reach GroupLens nor download recbole==1.2.1 from PyPI "
            f"({result.stderr.strip()[-300:]}); put u.data and u.item (or ratings/movies files) in the data dir"
        )
    if _digest(wheel, "sha256") != RECBOLE_SHA256:
        raise FetchError(f"{wheel.name}: sha256 differs from the pinned {RECBOLE_SHA256}; refusing to use it")
    return wheel


def extract_recbole(wheel: Path, target: Path) -> None:
    """Copies ml-100k.inter and ml-100k.item out of the wheel (a zip) into `target`, atomically."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, zipfile.ZipFile(wheel) as zipped:
        staging = Path(tmp) / "ml-100k"
        staging.mkdir()
        for name in RECBOLE_FILES:
            try:
                (staging / name).write_bytes(zipped.read(RECBOLE_PREFIX + name))
            except KeyError as exc:
                raise FetchError(f"{wheel.name} has no {RECBOLE_PREFIX + name}") from exc
        _replace_dir(staging, target)


def _replace_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    source.rename(target)


def _digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()
