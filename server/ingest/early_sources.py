"""Write key → what the collector needs to expand the snippet's early send, read once per change.

The snippet's compact early send (server/ingest/early.py) leaves the library name and version and
the device-mode destination marks to the server. They come from the source's current settings
(``server.api.early_send.early_facts``, the rule the snippet was rendered by), read from the store
on the first early send for a key and then kept ``ttl`` seconds; a settings change in this process
drops the entry at once through ``notify.SETTINGS`` (other processes: scale-out's change bus or the
TTL). Only ``/e`` uses this: the other Tracking API routes never read a source's destinations.
"""

from __future__ import annotations

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.api.early_send import Facts, early_facts
from server.catalog import Catalog
from server.ingest.keys import SettingsKeyed
from server.store import workspace


class EarlySources(SettingsKeyed[Facts | None]):
    def __init__(self, engine: Engine, catalog: Catalog, *, ttl: float = 2.0, max_entries: int = 10_000):
        super().__init__(engine, ttl=ttl, max_entries=max_entries)
        self.catalog = catalog

    async def facts(self, write_key: str) -> Facts | None:
        """The source's early-send facts, or None when its events must wait for the bundle."""
        hit, facts = self.cached(write_key)
        if hit:
            return facts
        return await run_in_threadpool(self._load, write_key)

    def _load(self, write_key: str) -> Facts | None:
        generation = self._generation
        return self._keep(write_key, generation, early_facts(self.catalog, workspace.public_config(self.engine, write_key)))
