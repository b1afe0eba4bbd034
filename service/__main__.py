"""Command line: `python -m service --models-dir models/` runs one uvicorn worker (uvloop, httptools)."""

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from service.app import create_app
from service.config import Settings
from service.limits import ReadLimits, guarded_protocol


def main(
    models_dir: Annotated[
        Path | None, typer.Option(help="Folder with CURRENT and the versions [RECSYS_MODELS_DIR]")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind [RECSYS_HOST, default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [RECSYS_PORT, default 8000]")] = None,
) -> None:
    """Serve top-k movie recommendations over HTTP; every setting also reads RECSYS_* variables."""
    overrides: dict[str, Any] = {
        name: value for name, value in (("models_dir", models_dir), ("host", host), ("port", port)) if value is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One worker: the model is shared by dynamic batching inside the process, not by forking it.
    limits = ReadLimits(settings.header_timeout_seconds, settings.body_timeout_seconds, settings.max_header_bytes)
    protocol = guarded_protocol(limits)  # httptools, with header and body deadlines and a header cap
    uvicorn.run(
        create_app(settings, protocol.requests_in_flight),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections,
        log_level=settings.log_level,
        access_log=False,  # metrics count every request; a log line each costs more than the request
    )


if __name__ == "__main__":
    typer.run(main)
