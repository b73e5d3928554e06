"""A warehouse sync: read the source's events after this destination's cursor, load them, and
move the cursor — only after the target committed.

A crash between the target's commit and the cursor update only means the next sync loads
those events again, and ``ON CONFLICT (id) DO NOTHING`` drops them. A load failing because of
the warehouse (connection, lock, disk) leaves the cursor, so the next sync retries everything;
events refused because of their data are skipped, listed and reported, and the rest loads
(isolation.py). Each sync is recorded (start, end, events, rows per table, notices, error,
skipped) in ``warehouse_syncs``.

``run_loop`` is the background scheduler: a destination syncs every ``sync_interval_seconds``,
or sooner once ``batch_rows`` events are waiting. It sleeps on the change bus: appended events
(``notify.EVENTS``, heeded only while a warehouse destination exists) and settings changes (a
warehouse added), or until the next destination's interval ends; a safety poll every
``SAFETY_POLL_S`` covers a lost notification. An idle server's scheduler queries nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine

from server.catalog import SECRET_MASK, Catalog, effective_settings
from server.config import Config
from server.store import audit, notify, workspace
from server.store import warehouse as store
from server.warehouse.batch import load_tables, rows_by_table
from server.warehouse.loader import Busy, PostgresTarget, SqliteTarget
from server.warehouse.naming import schema_name
from server.warehouse.reload import reload_skipped
from server.warehouse.report import SyncReport

log = logging.getLogger("switchboard.warehouse")

SLUG = "warehouse"
TICK_SECONDS = 1.0  # at most one scheduler pass a second, however often events are appended
SAFETY_POLL_S = 30.0


class NotAWarehouse(ValueError):
    """The destination exists but is not a warehouse."""


LIMITS = {"sync_interval_seconds": (1, 86_400), "batch_rows": (1, 100_000), "column_limit": (20, 1_600)}


def settings_of(catalog: Catalog, destination: dict[str, Any]) -> dict[str, Any]:
    """Effective settings, numbers held to sane bounds (PostgreSQL allows 1,600 columns)."""
    settings = effective_settings(catalog.get(SLUG), destination["settings"], "cloud")
    for key, (low, high) in LIMITS.items():
        settings[key] = int(min(max(settings.get(key) or low, low), high))
    return settings


def redact(text: str, settings: dict[str, Any]) -> str:
    """Errors end up in the sync history: keep the secret settings (URL, file path) out of it."""
    secrets = [settings.get("database_url"), settings.get("sqlite_path")]
    if settings.get("sqlite_path"):
        secrets.append(str(Path(settings["sqlite_path"]).parent))  # mkdir errors name the folder
    for value in secrets:
        if value and value not in (".", "/"):
            text = text.replace(str(value), SECRET_MASK)
    url = settings.get("database_url") or ""
    password = re.match(r"[^:]+://[^:/@]+:([^@]+)@", url)
    if password:
        text = text.replace(password.group(1), SECRET_MASK)
    return text


def default_sqlite_path(config: Config, source_slug: str) -> Path:
    """``warehouse/<source slug>.db`` beside the Switchboard database (or the working directory)."""
    base = Path(".")
    if config.database_url.startswith("sqlite:///"):
        base = Path(config.database_url[len("sqlite:///"):]).parent
    return base / "warehouse" / f"{source_slug}.db"


def open_target(config: Config, destination: dict[str, Any], source: dict[str, Any], settings: dict[str, Any]):
    if settings.get("target") == "postgresql":
        url = settings.get("database_url")
        if not url:
            raise ValueError("the database type is PostgreSQL but no PostgreSQL connection URL is set")
        return PostgresTarget(url, schema_name(source["slug"]), destination["id"],
                              allow_private_egress=config.allow_private_egress)
    path = settings.get("sqlite_path") or default_sqlite_path(config, source["slug"])
    return SqliteTarget(path, destination["id"])


def sync_destination(
    engine: Engine, catalog: Catalog, config: Config, destination_id: int, *,
    trigger: str = "manual", wait: bool = True, reload: bool = False,
) -> dict[str, Any] | None:
    """Load everything waiting for one warehouse destination; return the sync's record.

    ``wait=False`` (the scheduler) returns None when another loader holds the warehouse.
    ``reload=True`` first loads the events skipped before again (reload.py).
    Raises ``workspace.NotFound`` / ``NotAWarehouse`` for a wrong id.
    """
    destination = workspace.get_destination(engine, destination_id)
    if destination["slug"] != SLUG:
        raise NotAWarehouse(f"destination {destination_id} is {destination['slug']}, not a warehouse")
    source = workspace.get_source(engine, destination["source_id"])
    settings = settings_of(catalog, destination)
    try:
        target = open_target(config, destination, source, settings)
    except Exception as exc:  # unreachable database, bad path: a failed sync, kept in the history
        sync_id = store.start_sync(engine, destination_id, trigger)
        error = redact(f"cannot open the warehouse: {exc}", settings)
        store.finish_sync(engine, sync_id, events=0, rows={}, notices=[], error=error)
        log.warning("warehouse %s: %s", destination_id, error)
        return store.get_sync(engine, sync_id)
    sync_id = None
    try:
        with target.lock(wait):
            store.close_interrupted(engine, destination_id)
            sync_id = store.start_sync(engine, destination_id, trigger)
            moved = store.use_target(engine, destination_id, target.fingerprint())
            _run(engine, catalog, target, destination, source, settings, sync_id, moved, reload)
    except Busy:
        if wait:
            raise
        return None
    except Exception as exc:  # the target failed outside a batch (lock, connection lost)
        error = redact(f"{type(exc).__name__}: {exc}", settings)
        log.warning("warehouse %s: %s", destination_id, error)
        if sync_id is None:
            sync_id = store.start_sync(engine, destination_id, trigger)
            store.finish_sync(engine, sync_id, events=0, rows={}, notices=[], error=error)
    finally:
        target.close()
    return store.get_sync(engine, sync_id)


def sync_on_request(engine: Engine, catalog: Catalog, config: Config, destination_id: int, *,
                    trigger: str, actor: str, reload: bool = False) -> dict[str, Any]:
    """A sync someone asked for (API, web app, CLI): ``sync_destination``, then an audit entry
    ``warehouse.sync`` with who asked and what it loaded. Scheduled syncs are in the sync
    history only (docs/warehouse.md)."""
    sync = sync_destination(engine, catalog, config, destination_id, trigger=trigger, reload=reload)
    assert sync is not None  # waited for the warehouse: always a record
    outcome = f"failed: {sync['error']}" if sync["error"] else f"loaded {sync['events']} event{'s' if sync['events'] != 1 else ''}"
    if sync["skipped"]:
        outcome += f", skipped {sync['skipped']} the warehouse refused"
    if reload:
        outcome = f"re-loaded skipped events and {outcome}"
    audit.record(engine, actor=actor, action="warehouse.sync", subject=f"destination:{destination_id}",
                 changes={"summary": f"Synced the warehouse ({trigger}): {outcome}", "sync_id": sync["id"],
                          "events": sync["events"], "error": sync["error"]})
    return sync


def _run(engine, catalog, target, destination, source, settings, sync_id, moved: bool, reload: bool) -> None:
    names = catalog.get(SLUG).integration_names
    batch_rows, column_limit = settings["batch_rows"], settings["column_limit"]
    report = SyncReport(destination["id"], lambda text: redact(text, settings))
    notice = report.notice
    if moved:
        notice("the warehouse settings point to another database: loading every logged event into it")

    totals: dict[str, int] = {}
    read = 0
    error = None
    try:
        if reload:
            totals = reload_skipped(engine, target, destination["id"], source["id"], names, batch_rows,
                                    column_limit, sync_id, notice, report.skip)
        # What was logged when the sync started: under a steady stream a sync still ends.
        up_to = store.last_event_id(engine, source["id"], floor=store.get_cursor(engine, destination["id"]))
        while True:
            cursor = store.get_cursor(engine, destination["id"])
            with _cyclic_gc_paused():
                logged = store.read_source_after(engine, source["id"], cursor, batch_rows, up_to)
                if not logged:
                    break
                batch = rows_by_table(logged, names, notice)
                counts, columns, refused = load_tables(target, batch, column_limit, notice)
                skipped = report.skip(batch.skipped + refused)
                last_id, count = logged[-1]["id"], len(logged)
                del logged, batch  # freed before the collector resumes
            store.record_columns(engine, destination["id"], columns)
            # Past the batch, recording what it skipped in the same transaction.
            store.advance_cursor(engine, destination["id"], last_id, skipped=skipped, sync_id=sync_id)
            read += count
            for table, n in counts.items():
                totals[table] = totals.get(table, 0) + n
            if count < batch_rows:
                break
    except Exception as exc:  # the cursor did not move: everything is retried next time
        error = redact(f"{type(exc).__name__}: {exc}", settings)
        log.warning("warehouse %s: sync failed, will retry: %s", destination["id"], error)
    store.finish_sync(engine, sync_id, events=read, rows=totals, notices=report.shown_notices(), error=error,
                      skipped=len(report.skipped_events))


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    A batch allocates hundreds of thousands of small dicts and strings (parsed events, rows)
    and frees them all at the end; with the collector on, it keeps scanning them while they
    are still alive, which made reading and transforming a batch about three times slower.
    Reference counting still frees everything; the collector resumes right after the batch.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _due_destinations(engine: Engine) -> list[dict[str, Any]]:
    return [
        d for d in workspace.list_destinations(engine)
        if d["slug"] == SLUG and d["enabled"] and d["mode"] == "cloud"
    ]


def scheduler_pass(engine: Engine, catalog: Catalog, config: Config,
                   last_run: dict[int, float]) -> tuple[bool, float | None]:
    """Sync every destination whose interval passed, or that has a full batch waiting; return
    (whether any warehouse destination exists, seconds until a waiting one's interval ends or
    None: then only new events or settings can make one due)."""
    found = _due_destinations(engine)
    next_due: float | None = None
    for destination in found:
        settings = settings_of(catalog, destination)
        interval, batch_rows = settings["sync_interval_seconds"], settings["batch_rows"]
        cursor = store.get_cursor(engine, destination["id"])
        waiting = store.pending_count(engine, destination["source_id"], cursor, batch_rows)
        if not waiting:
            continue
        elapsed = time.monotonic() - last_run.get(destination["id"], float("-inf"))
        if elapsed < interval and waiting < batch_rows:
            due = interval - elapsed
            next_due = due if next_due is None else min(next_due, due)
            continue
        last_run[destination["id"]] = time.monotonic()
        try:
            sync_destination(engine, catalog, config, destination["id"], trigger="schedule", wait=False)
        except workspace.NotFound:
            continue  # deleted meanwhile
    return bool(found), next_due


async def run_loop(engine: Engine, catalog: Catalog, config: Config, stop: asyncio.Event) -> None:
    last_run: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    state = {"warehouses": True}  # until the first pass knows: heed appended events

    def changed(*_: object) -> None:
        loop.call_soon_threadsafe(wake.set)

    def appended(*_: object) -> None:
        if state["warehouses"]:  # no warehouse destination: events cost the scheduler nothing
            loop.call_soon_threadsafe(wake.set)

    unsubscribe = [notify.SETTINGS.subscribe(changed), notify.EVENTS.subscribe(appended)]
    try:
        while not stop.is_set():
            began = time.monotonic()
            wake.clear()
            next_due: float | None = None
            try:
                state["warehouses"], next_due = await asyncio.to_thread(
                    scheduler_pass, engine, catalog, config, last_run)
            except Exception:
                log.exception("warehouse scheduler pass failed")
                next_due = TICK_SECONDS
            sleep = SAFETY_POLL_S if next_due is None else min(max(next_due, TICK_SECONDS), SAFETY_POLL_S)
            await _sleep(stop, wake, sleep)
            # Woken early (events, settings): still at most one pass per TICK_SECONDS.
            rest = TICK_SECONDS - (time.monotonic() - began)
            if rest > 0 and not stop.is_set():
                await _sleep(stop, None, rest)
    finally:
        for undo in unsubscribe:
            undo()


async def _sleep(stop: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    """Until ``stop`` or ``wake`` is set, or ``timeout`` seconds have passed."""
    waiters = {asyncio.ensure_future(stop.wait())}
    if wake is not None:
        waiters.add(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
