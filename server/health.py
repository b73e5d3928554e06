"""Liveness and readiness probes: no auth, no secrets."""

from __future__ import annotations

from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import json_response
from server.store.engine import read_only


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


def _ping(engine) -> None:
    # read_only: on SQLite a plain connection would BEGIN IMMEDIATE and queue behind writers.
    with read_only(engine) as conn:
        conn.execute(text("SELECT 1"))


async def readyz(request: Request) -> Response:
    try:
        await run_in_threadpool(_ping, request.app.state.engine)
    except Exception as exc:  # any database failure means "not ready"
        return json_response(
            {"status": "unavailable", "code": "database_unreachable", "message": type(exc).__name__}, 503
        )
    return json_response({"status": "ok", "database": request.app.state.engine.dialect.name})


def routes(config) -> list[Route]:
    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
