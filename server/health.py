"""Liveness and readiness probes: no auth, no secrets.

``/readyz`` is 503 while the store cannot take a write: it writes one row (server/store/probe.py:
a read would succeed on a full disk or a locked file), and it also reports what this process's
collector last saw (a commit that failed in the last ``WRITER_MEMORY`` seconds for a store
reason). The write probe runs at most once a second; requests in between get its last answer.
"""

from __future__ import annotations

import asyncio
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.errors import json_response
from server.store.failures import category, describe
from server.store.probe import probe_write

WRITER_MEMORY = 10.0  # seconds a failed collector commit keeps /readyz at 503
PROBE_EVERY = 1.0


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


class _Probe:
    """The last write probe's outcome (None: it wrote), shared by the app's requests."""

    def __init__(self):
        self.at = 0.0
        self.error: str | None = None
        self.lock = asyncio.Lock()

    async def check(self, engine) -> str | None:
        if time.monotonic() - self.at < PROBE_EVERY:
            return self.error
        async with self.lock:  # one probe at a time; the others wait for its answer
            if time.monotonic() - self.at >= PROBE_EVERY:
                try:
                    await run_in_threadpool(probe_write, engine)
                    self.error = None
                except Exception as exc:  # any database failure means "not ready"
                    self.error = category(describe(exc))
                self.at = time.monotonic()
        return self.error


def _probe(app) -> _Probe:
    probe = getattr(app.state, "store_probe", None)
    if probe is None:
        probe = app.state.store_probe = _Probe()
    return probe


async def readyz(request: Request) -> Response:
    engine = request.app.state.engine
    error = await _probe(request.app).check(engine)
    code = "store_unavailable"
    if error is None:
        collector = getattr(request.app.state, "collector", None)
        error = collector.writer.failing(WRITER_MEMORY) if collector is not None else None
        error = category(error) if error is not None else None
        code = "store_failing"
    if error is not None:
        return json_response({"status": "unavailable", "code": code,
                              "message": f"The store cannot take writes: {error}"}, 503,
                             headers={"Retry-After": "5"})
    return json_response({"status": "ok", "database": engine.dialect.name})


def routes(config) -> list[Route]:
    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
