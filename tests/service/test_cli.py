"""The command line and the serving process's imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import service.__main__ as cli
from service.config import Settings
from service.limits import ReadLimits


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: Any, **options: Any) -> None:
        seen.update(options, settings=app.state.service.settings)

    monkeypatch.setattr(cli.uvicorn, "run", fake_run)
    monkeypatch.setenv("RECSYS_PORT", "9001")
    monkeypatch.setenv("RECSYS_MAX_K", "7")
    app = typer.Typer()
    app.command()(cli.main)
    result = CliRunner().invoke(app, ["--models-dir", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    settings: Settings = seen["settings"]
    assert (settings.models_dir, settings.host, settings.port, settings.max_k) == (tmp_path, "0.0.0.0", 9001, 7)
    assert (seen["host"], seen["port"], seen["loop"]) == ("0.0.0.0", 9001, "uvloop")
    # httptools with the deployment limits: deadlines and a header cap from the settings, and a connection cap.
    assert seen["http"].limits == ReadLimits(10.0, 30.0, 16_384)
    assert (seen["limit_concurrency"], seen["timeout_keep_alive"]) == (1000, 5)


def test_serving_imports_neither_training_nor_tensorflow_recommenders(shared_models_dir: Path) -> None:
    """The version directory is the whole contract: loading one needs only the serving dependencies."""
    code = f"""
import sys
from pathlib import Path
from service.artifacts import load_version
from service.registry import Registry
version = load_version(Path({str(shared_models_dir)!r}) / "20260101T000000Z", max_batch=4, min_recall=0.8)
assert version.embed(["1"], [885000000], [["2"]]).shape == (1, 8)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("training", "tensorflow_recommenders"))
assert not leaked, leaked
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.stdout.strip().endswith("ok"), done.stderr[-2000:]
