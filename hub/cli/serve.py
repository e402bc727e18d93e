"""``lienthong serve``: run the REST entry point (and its outbox relay) under uvicorn.

With several workers each process builds its own app from the same settings (environment and
``LIENTHONG_CONFIG``): the per-client rate is divided among them, and Prometheus metrics are
shared through ``PROMETHEUS_MULTIPROC_DIR`` so ``/metrics`` reports all of them."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from hub.settings import Settings

FACTORY = "hub.cli.serve:app_from_env"


def app_from_env() -> FastAPI:
    """The app of one worker process, from the environment (uvicorn factory)."""
    from hub.api.app import create_app

    return create_app(Settings())


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on [settings.http_host]")]
    = None,
    port: Annotated[int | None, typer.Option(help="port [settings.http_port]")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    access_log: Annotated[bool, typer.Option(help="log every request")] = False,
) -> None:
    """Serve the REST API (/v1/..., /openapi.json, /healthz, /readyz, /metrics)."""
    settings = Settings()
    if workers > 1:
        # Workers inherit the environment: each takes its share of the per-client rate.
        os.environ["LIENTHONG_RATE_PER_CLIENT"] = repr(settings.rate_per_client / workers)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="lienthong-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            FACTORY,
            factory=True,
            host=host or settings.http_host,
            port=port or settings.http_port,
            workers=workers,
            log_level=log_level,
            access_log=access_log,
            # The C parser and event loop when installed (uvicorn[standard]); pure Python else.
            http="httptools" if importlib.util.find_spec("httptools") else "h11",
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
            timeout_graceful_shutdown=10,
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
