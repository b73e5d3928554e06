"""Test support for delivery flows: a source with destinations, events appended to the real log,
and a real DeliveryService running on its own event loop thread while the test waits."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import select

from server.delivery.sender import Sender
from server.delivery.worker import DeliveryService
from server.store import delivery as store
from server.store import events, workspace
from server.store.engine import read_only


def source_with(engine, *destinations: dict[str, Any], name: str = "Site") -> tuple[dict, list[dict]]:
    source = workspace.create_source(engine, name)
    added = [
        workspace.add_destination(engine, source["id"], slug=d["slug"], mode=d.get("mode", "cloud"),
                                  enabled=d.get("enabled", True), settings=d.get("settings", {}))
        for d in destinations
    ]
    return source, added


def append(engine, source_id: int, items: list[dict[str, Any]]) -> None:
    now = datetime.now(timezone.utc)
    stored = events.append(engine, events.rows_for(source_id, now, items), dedupe_window=86400)
    assert all(stored)


def jobs(engine, destination_id: int | None = None) -> list[dict[str, Any]]:
    query = select(store.delivery_jobs).order_by(store.delivery_jobs.c.id)
    if destination_id is not None:
        query = query.where(store.delivery_jobs.c.destination_id == destination_id)
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def all_finished(engine, destination_id: int, count: int, status: str = store.DELIVERED) -> bool:
    found = jobs(engine, destination_id)
    return len(found) == count and all(j["status"] == status for j in found)


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class RunningService:
    """``with RunningService(engine, catalog, ...) as service:`` — a DeliveryService on a background loop."""

    def __init__(self, engine, catalog, *, base_urls: dict[str, str] | None = None, timeout: float = 5.0, **options):
        self.engine, self.catalog = engine, catalog
        self.base_urls, self.timeout = base_urls or {}, timeout
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_cap", 0.2)
        options.setdefault("poll_interval", 0.02)
        options.setdefault("shutdown_grace", 2.0)
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> DeliveryService:
        self.thread.start()

        async def start():
            sender = Sender(timeout=self.timeout, base_urls=self.base_urls, allow_private_egress=True)
            self.sender = sender
            return await DeliveryService(self.engine, self.catalog, sender=sender, **self.options).start()

        self.service = self._call(start())
        return self.service

    def __exit__(self, *exc) -> None:
        async def stop():
            await self.service.stop()
            await self.sender.aclose()

        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
