"""``create_app(config)``: the one Starlette application, assembled from its planes.

A plane is a package (or module) whose door (its ``__init__``) exports ``routes(config) ->
list[BaseRoute]`` and, optionally, ``async startup(app)`` / ``async shutdown(app)`` (workers,
caches, listeners) and ``add_commands(subparsers)`` (CLI). Planes share the store engine and the
catalog through ``app.state``; none imports another (docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import logging
from types import ModuleType
from typing import AsyncIterator, Callable

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from server import admin, alerts, cdn, delivery, demo, health, ingest, privacy, scaleout, warehouse, web
from server.catalog import Catalog, load_catalog
from server.config import Config
from server.errors import EXCEPTION_HANDLERS
from server.api.unavailable import STORE_HANDLERS
from server.api.client_address import client_address, forwarded_for
from server.store import audit, open_store

log = logging.getLogger("switchboard")

# Order matters only where paths overlap: earlier planes win.
PLANES: list[ModuleType] = [cdn, ingest, health, scaleout, admin, delivery, demo, web, warehouse, privacy, alerts]
BY_NAME = {plane.__name__: plane for plane in PLANES}


class SwitchboardApp(Starlette):
    """Starlette, with exact-path shortcuts for the busiest endpoints.

    A route may list ``fast_paths`` ({path: path_params}): requests for exactly those paths go
    straight to the route's ASGI app, skipping Starlette's middleware stack and the router's
    walk over every route's pattern. Only raw ASGI endpoints that answer every error themselves
    use it (the Tracking API: one event per request from every browser, where those layers were
    about a tenth of the CPU per request) and the bundle (every page view of every site). Everything
    else, and any app mounted under a ``root_path``, takes the normal way.
    """

    fast_paths: dict[str, tuple[ASGIApp, dict[str, str]]]
    # Routes whose paths carry a parameter instead give ``fast_match(scope) -> path_params | None``.
    fast_matchers: list[tuple[Callable[[Scope], dict[str, str] | None], ASGIApp]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            fast = self.fast_paths.get(scope["path"])
            if fast is None:
                for match, endpoint in self.fast_matchers:
                    params = match(scope)
                    if params is not None:
                        fast = (endpoint, params)
                        break
            if fast is not None:
                scope["app"] = self
                scope["path_params"] = fast[1]
                await fast[0](scope, receive, send)
                return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # The audit's "from where" for every change this request makes (server/store/audit.py).
        peer = scope["client"][0] if scope.get("client") else None
        agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"").decode("latin-1")
        token = audit.origin.set({"user_agent": agent, "address": client_address(
            peer, forwarded_for(scope["headers"]), self.state.config.trust_proxy)})
        try:
            await super().__call__(scope, receive, send)
        finally:
            audit.origin.reset(token)


def create_app(
    config: Config | None = None,
    *,
    engine: Engine | None = None,
    catalog: Catalog | None = None,
    planes: list[str | ModuleType] | None = None,
) -> SwitchboardApp:
    """``planes``: a subset of ``PLANES`` (modules, or their names; tests), all of them by default."""
    config = config or Config.from_env()
    engine = engine or open_store(config.database_url, busy_timeout=config.sqlite_busy_timeout)
    catalog = catalog or load_catalog()
    modules = [BY_NAME[p] if isinstance(p, str) else p for p in planes] if planes else PLANES
    routes = [route for module in modules for route in module.routes(config)]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = []
        try:
            for module in modules:
                if hasattr(module, "startup"):
                    await module.startup(app)
                    started.append(module)
            yield
        finally:
            for module in reversed(started):
                if hasattr(module, "shutdown"):
                    try:
                        await module.shutdown(app)
                    except Exception:
                        log.exception("shutdown of %s failed", module.__name__)

    app = SwitchboardApp(routes=routes, exception_handlers={**EXCEPTION_HANDLERS, **STORE_HANDLERS}, lifespan=lifespan)
    app.fast_paths = {
        path: (route.app, params) for route in routes for path, params in getattr(route, "fast_paths", {}).items()
    }
    app.fast_matchers = [(route.fast_match, route.app) for route in routes if hasattr(route, "fast_match")]
    app.state.config = config
    app.state.engine = engine
    app.state.catalog = catalog
    app.state.erasers = [warehouse.erase_users]  # a delete regulation's warehouse step (privacy plane)
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory server.app:app_from_env`` (used by --workers)."""
    return create_app()
