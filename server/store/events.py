"""The durable event log: every accepted Tracking API event, in arrival order.

``events.id`` is the log sequence that delivery reads after (``read_after``). ``payload`` is
the normalised event as JSON text (written once with orjson, parsed only by readers that need
it). ``message_ids`` holds the dedupe window: (source_id, message_id) seen in the last 24 h.

Writing: ``append(engine, rows, dedupe_window=)`` stores many requests' rows in one
transaction (the collector's group-commit writer calls it) and skips duplicates;
``prune_message_ids`` forgets ids older than the window.

Waking readers: every append that stored at least one event is published on the change bus,
``notify.EVENTS`` (``(max_event_id,)``): NOTIFY inside the transaction on PostgreSQL, then this
process's subscribers right after the commit (server/store/notify.py).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

import orjson
from sqlalchemy import Column, Connection, Engine, Index, String, Table, Text, func, select
from sqlalchemy.types import TypeDecorator

from server.store import notify
from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata

log = logging.getLogger("switchboard.events")

class PayloadText(TypeDecorator):
    """TEXT in the database. Binds ``rows_for``'s UTF-8 bytes as text too, so that its rows can
    also be inserted through SQLAlchemy (tests, tools); ``append`` sends the bytes itself."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return value.decode() if isinstance(value, (bytes, bytearray)) else value


events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_id", Id, nullable=False),
    Column("message_id", String(100), nullable=False),
    Column("type", String(10), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("payload", PayloadText(), nullable=False),
    # Never reuse an id, even of a deleted newest row: delivery's cursor reads "after id N".
    sqlite_autoincrement=True,
)
Index("ix_events_source_id_id", events.c.source_id, events.c.id)

message_ids = Table(
    "message_ids",
    metadata,
    Column("source_id", Id, primary_key=True),
    Column("message_id", String(100), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False, index=True),
)


def _event(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "source_id": row.source_id,
        "message_id": row.message_id,
        "type": row.type,
        "received_at": row.received_at,
        "event": orjson.loads(row.payload),
    }


def read_after(engine: Engine, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Events with id > after_id, oldest first: what delivery fans out next."""
    with read_only(engine) as conn:
        rows = conn.execute(select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)).all()
    return [_event(r) for r in rows]


def list_events(
    engine: Engine,
    source_id: int,
    *,
    limit: int = 50,
    type: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """A source's events, newest first (the debugger and the admin API)."""
    query = select(events).where(events.c.source_id == source_id)
    if type:
        query = query.where(events.c.type == type)
    if before:
        query = query.where(events.c.id < before)
    with read_only(engine) as conn:
        rows = conn.execute(query.order_by(events.c.id.desc()).limit(limit)).all()
    return [_event(r) for r in rows]


def get_event(engine: Engine, event_id: int) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(events).where(events.c.id == event_id)).one_or_none()
    return None if row is None else _event(row)


def rows_for(source_id: int, received_at: datetime, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for ``append`` from normalised events (each already has messageId and type).

    ``payload`` is the event serialised once, as orjson's UTF-8 bytes: ``append`` hands those
    bytes to the database as they are (never decoded to str, re-encoded, or escaped inside
    another JSON document), and the column holds them as text."""
    return [
        {
            "source_id": source_id,
            "message_id": item["messageId"],
            "type": item["type"],
            "received_at": received_at,
            "payload": orjson.dumps(item),
        }
        for item in items
    ]


# ---------------------------------------------------------------- durable append with dedupe

def append(bind: Engine | Connection, rows: list[dict[str, Any]], *, dedupe_window: float) -> list[bool]:
    """Store ``rows`` (from ``rows_for``: ``payload`` is UTF-8 JSON bytes) in ONE transaction;
    return, per row, whether it was stored.

    ``bind`` is an Engine, or a Connection not in a transaction (a long-lived writer keeps one:
    on SQLite, opening a connection per commit would cost more than the commit).

    A row whose (source_id, message_id) was seen less than ``dedupe_window`` seconds ago — in an
    earlier commit, by any process, or earlier in ``rows`` — is a duplicate and is not stored.
    The unique key of ``message_ids`` makes that global: two processes racing with the same id
    serialise on it and exactly one wins. An entry older than the window is taken over (so the
    event is stored again) even if pruning has not removed it yet.
    """
    if not rows:
        return []
    first: dict[tuple[int, str], int] = {}
    for index, row in enumerate(rows):
        first.setdefault((row["source_id"], row["message_id"]), index)
    window = timedelta(seconds=dedupe_window)
    if bind.dialect.name == "sqlite":
        with _transaction(bind) as conn:
            stored, max_id = _append_sqlite(conn, rows, first, window)
    else:  # one statement, which is its own transaction
        with _single_statement(bind) as cursor:
            stored, max_id = _append_postgresql(cursor, rows, first, window)
    if stored:
        notify.EVENTS.committed(max_id)  # other processes: the NOTIFY sent inside, or SQLite's bell
    flags = [False] * len(rows)
    for i in stored:
        flags[i] = True
    return flags


@contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    else:
        with bind.begin():
            yield bind


@contextmanager
def _single_statement(bind: Engine | Connection) -> Iterator[Any]:
    """A DBAPI cursor in autocommit mode, for ONE statement that is its own transaction.

    PostgreSQL's append is a single statement, atomic by itself; run inside BEGIN … COMMIT it
    would cost two more round trips (psycopg sends BEGIN on its own, then COMMIT), and under load
    each round trip's return also waits for the GIL. In autocommit the statement commits (and
    waits for its WAL flush) as it ends: one round trip a group. A Connection handed in must not
    be in a transaction (psycopg refuses to switch then)."""
    with bind.connect() if isinstance(bind, Engine) else nullcontext(bind) as conn:
        raw = conn.connection.dbapi_connection
        raw.autocommit = True
        cursor = raw.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            try:
                raw.autocommit = False
            except Exception:  # the connection broke mid-statement: never hand it out again
                conn.invalidate()


# SQLite: the whole group in three statements, whatever its size. Rows travel as one JSON
# array parameter read by json_each, so each statement is a single sqlite3_step — and the
# driver releases the GIL around every step, which under load means a thread switch per step:
# per-row statements made the writer fight the event loop for the GIL on every row.
# The write lock is held for the whole transaction (BEGIN IMMEDIATE), so "find the duplicates,
# then claim the rest" is exact.
_SQLITE_DUPLICATES = (
    "SELECT m.source_id, m.message_id FROM json_each(?) AS j JOIN message_ids AS m "
    "ON m.source_id = json_extract(j.value, '$[0]') AND m.message_id = json_extract(j.value, '$[1]') "
    "WHERE m.received_at >= ?"
)
_SQLITE_CLAIM = (
    "INSERT INTO message_ids (source_id, message_id, received_at) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]') "
    "FROM json_each(?) WHERE true "
    "ON CONFLICT (source_id, message_id) DO UPDATE SET received_at = excluded.received_at"
)
# The payloads are not in the JSON: as JSON strings each would be escaped (in Python) and
# unescaped (in SQLite) — most of the statement's cost. They travel as ONE blob, the rows'
# payload bytes back to back, and each row's [offset, length] picks its slice (substr counts
# bytes in a blob; CAST stores the UTF-8 bytes as text, unchanged).
_SQLITE_EVENTS = (
    "INSERT INTO events (source_id, message_id, type, received_at, payload) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[3]'), "
    "json_extract(value, '$[2]'), "
    "CAST(substr(?2, json_extract(value, '$[4]'), json_extract(value, '$[5]')) AS TEXT) "
    "FROM json_each(?1) ORDER BY key"
)


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (``YYYY-MM-DD HH:MM:SS.ffffff``, fields as
    given), written directly: the bind processor costs microseconds a row."""
    return moment.isoformat(sep=" ", timespec="microseconds")[:26]


def _append_sqlite(conn, rows, first, window) -> tuple[list[int], int | None]:
    texts: dict[datetime, str] = {}  # one per request: a batch's rows share their received_at
    candidates = []
    for (source_id, message_id), i in first.items():
        at = rows[i]["received_at"]
        text = texts.get(at)
        if text is None:
            text = texts[at] = _sqlite_time(at)
        candidates.append((source_id, message_id, text, i))
    # One cutoff for the group, from its earliest request: the window may be longer by the
    # milliseconds a group spends queued, never shorter.
    cutoff = _sqlite_time(min(texts) - window)
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        seen = set(cursor.execute(_SQLITE_DUPLICATES, (orjson.dumps(candidates), cutoff)).fetchall())
        claimed = [c for c in candidates if (c[0], c[1]) not in seen]  # in row order, like ``first``
        if not claimed:
            return [], None
        cursor.execute(_SQLITE_CLAIM, (orjson.dumps(claimed),))
        payloads = []
        slices = []
        offset = 1  # substr counts from 1
        for source_id, message_id, at, i in claimed:
            row = rows[i]
            payload = row["payload"]
            payloads.append(payload)
            slices.append((source_id, message_id, at, row["type"], offset, len(payload)))
            offset += len(payload)
        cursor.execute(_SQLITE_EVENTS, (orjson.dumps(slices), b"".join(payloads)))
        max_id = cursor.lastrowid  # the last row inserted has the highest id (AUTOINCREMENT)
    finally:
        cursor.close()
    return [c[3] for c in claimed], max_id


# PostgreSQL: the group travels as arrays, one parameter per column, in binary (%b: the text
# format would escape every quote of every JSON payload, in Python; the payloads go as the
# bytes they are, bytea, and the server reads them as UTF-8 text), and the whole append is
# ONE statement — claim the ids, insert the events claimed, NOTIFY — run in autocommit
# (``_single_statement``), so a commit is one round trip instead of five (three with BEGIN and
# COMMIT around it): at 64 connections a single-event request waits for about one and a half
# commits, so round trips are most of its latency. Racing processes
# serialise on the message_ids key; the claim's RETURNING gives exactly the rows this
# transaction claimed (new, or expired and taken over), and only those are inserted (the join),
# in row order (``ORDER BY n``: ids follow the order requests arrived in).
_PG_APPEND = (
    "WITH claimed AS ("
    "INSERT INTO message_ids (source_id, message_id, received_at) "
    "SELECT * FROM unnest(%b::bigint[], %b::text[], %b::timestamptz[]) "
    "ON CONFLICT (source_id, message_id) DO UPDATE SET received_at = excluded.received_at "
    "WHERE message_ids.received_at < excluded.received_at - %s::interval "
    "RETURNING source_id, message_id), "
    "stored AS ("
    "INSERT INTO events (source_id, message_id, type, received_at, payload) "
    "SELECT u.s, u.m, u.t, u.r, convert_from(u.p, 'UTF8') "
    "FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::timestamptz[], %b::bytea[]) "
    "WITH ORDINALITY AS u(s, m, t, r, p, n) JOIN claimed AS c ON c.source_id = u.s AND c.message_id = u.m "
    "ORDER BY u.n RETURNING id), "
    "top AS (SELECT max(id) AS id FROM stored) "
    "SELECT top.id, ARRAY(SELECT source_id FROM claimed), ARRAY(SELECT message_id FROM claimed), "
    # A one-time filter: nothing stored (top.id is NULL), no notification.
    "(SELECT count(*) FROM pg_notify(%s, top.id::text) WHERE top.id IS NOT NULL) FROM top"
)


def _append_postgresql(cursor, rows, first, window) -> tuple[list[int], int | None]:
    # Sorted: concurrent writers with overlapping ids then lock them in the same order, so they
    # wait for each other instead of deadlocking.
    keys = sorted(first)
    chosen = [rows[i] for i in first.values()]  # each id's first row, in row order
    cursor.execute(_PG_APPEND, (
        [k[0] for k in keys], [k[1] for k in keys], [rows[first[k]]["received_at"] for k in keys], window,
        *([r[c] for r in chosen] for c in ("source_id", "message_id", "type", "received_at", "payload")),
        # notify.EVENTS.publish's NOTIFY (payload: the highest id stored), in the same statement.
        notify.EVENTS.channel,
    ))
    max_id, sources, claimed_ids, _notified = cursor.fetchone()
    new = set(zip(sources, claimed_ids))
    return [i for key, i in first.items() if key in new], max_id


def prune_message_ids(bind: Engine | Connection, *, dedupe_window: float, now: datetime | None = None) -> int:
    """Forget message ids older than the window; return how many were removed."""
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(seconds=dedupe_window)
    with _transaction(bind) as conn:
        return conn.execute(message_ids.delete().where(message_ids.c.received_at < cutoff)).rowcount


def count_events(engine: Engine, source_id: int | None = None) -> int:
    query = select(func.count()).select_from(events)
    if source_id is not None:
        query = query.where(events.c.source_id == source_id)
    with read_only(engine) as conn:
        return conn.execute(query).scalar_one()


def events_after(engine: Engine, source_id: int, after: int, limit: int = 200, skip: frozenset[int] = frozenset()
                 ) -> list[dict[str, Any]]:
    """The source's events with id > after and not in ``skip``, oldest first (one range scan; the
    debugger's live stream)."""
    query = select(events).where(events.c.source_id == source_id, events.c.id > after)
    if skip:
        query = query.where(events.c.id.not_in(skip))
    query = query.order_by(events.c.id).limit(limit)
    with read_only(engine) as conn:
        return [_event(r) for r in conn.execute(query)]
