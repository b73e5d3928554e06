"""``create_app(config)``: the one Starlette application, assembled from its planes.

A plane is a module with ``routes(config) -> list[BaseRoute]`` and, optionally,
``async startup(app)`` / ``async shutdown(app)`` (workers, caches, listeners). Planes share the
store engine and the catalog through ``app.state``; none imports another.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import AsyncIterator

from sqlalchemy import Engine
from starlette.applications import Starlette

from server.catalog import Catalog, load_catalog
from server.config import Config
from server.errors import EXCEPTION_HANDLERS
from server.store import open_store

log = logging.getLogger("switchboard")

# Order matters only where paths overlap: earlier planes win.
PLANES = [
    "server.cdn",
    "server.collector",
    "server.health",
    "server.scaleout",
    "server.admin.api",
    "server.delivery",
    "server.demo",
    "server.web",
    "server.warehouse",
]


def create_app(
    config: Config | None = None,
    *,
    engine: Engine | None = None,
    catalog: Catalog | None = None,
    planes: list[str] | None = None,
) -> Starlette:
    config = config or Config.from_env()
    engine = engine or open_store(config.database_url)
    catalog = catalog or load_catalog()
    modules = [importlib.import_module(name) for name in (planes or PLANES)]
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

    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state.config = config
    app.state.engine = engine
    app.state.catalog = catalog
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory server.app:app_from_env`` (used by --workers)."""
    return create_app()
