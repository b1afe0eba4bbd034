"""Writing a benchmark's results file: whole or not at all (a temporary file, then a rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_results(out: Path, results: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
