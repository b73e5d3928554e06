"""SQLite's fast paths for delivery claims and results (``delivery.claim``, ``delivery.lease``
— which ``claims.claim_many``, the workers' claim, ends in — and ``delivery.finish``).

Why: on one worker delivering one request per event, SQLAlchemy's per-row work was the largest
cost in the store's threads (issue #18, ``bench/deliver_profile.py --split``): claims went through
expanding ``IN`` lists and result processors turning five timestamps of every row into
datetimes (~30 µs an event), results through an executemany that bound every row's values one by
one and stepped SQLite once per row (~40 µs). Here the same statements run as plain SQL with the
rows travelling as one JSON array (``json_each``), as the fan-out already queues its jobs —
about half of that. PostgreSQL keeps the SQLAlchemy statements in ``delivery.py``.

Times are stored as SQLAlchemy stores them in SQLite (UTC, no zone, microseconds), so both paths
read and write the same rows (``tests/test_delivery_fast_paths.py`` compares them).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, Table

from server.store.schema import UTCDateTime

# UPDATE … FROM needs SQLite 3.33 (2020); older libraries take delivery.py's executemany path.
UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33)

_FINISH = (
    "UPDATE delivery_jobs SET status = json_extract(r.value, '$[1]'),"
    " attempts = delivery_jobs.attempts + json_extract(r.value, '$[2]'),"
    " next_attempt_at = json_extract(r.value, '$[3]'), finished_at = json_extract(r.value, '$[4]'),"
    " latency_ms = json_extract(r.value, '$[5]'), last_status = json_extract(r.value, '$[6]'),"
    " last_error = json_extract(r.value, '$[7]'), lease_until = NULL, lease_owner = NULL"
    " FROM json_each(?) AS r"
    " WHERE delivery_jobs.id = json_extract(r.value, '$[0]') AND delivery_jobs.lease_owner = ?"
)
_ATTEMPTS = (
    "INSERT INTO delivery_attempts (job_id, destination_id, at, outcome, request, status, response, error,"
    " latency_ms) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),"
    " json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]')"
    " FROM json_each(?) ORDER BY key"
)
_CLAIM_IDS = (
    "SELECT id FROM delivery_jobs WHERE destination_id = ? AND status IN (?, ?) AND next_attempt_at <= ?"
    " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at, id LIMIT ?"
)
_CLAIM_LEASE = (
    "UPDATE delivery_jobs SET lease_until = ?, lease_owner = ?,"
    " takeovers = takeovers + CASE WHEN lease_owner IS NULL THEN 0 ELSE 1 END"
    " WHERE id IN (SELECT value FROM json_each(?))"
)


def stamp(value: datetime | None) -> str | None:
    """A time as SQLAlchemy stores it in SQLite (UTC, no zone, microseconds)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def parse_stamp(value: str | datetime) -> datetime:
    """A stored SQLite time (UTC without a zone) as an aware datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class SqliteDelivery:
    """The statements for one jobs table (its columns are read once, from the table)."""

    def __init__(self, jobs: Table, pending: tuple[str, str]):
        self.pending = pending
        self.columns = [c.name for c in jobs.c]
        self.times = [c.name for c in jobs.c if isinstance(c.type, UTCDateTime)]
        self.claimed = (
            "SELECT " + ", ".join(f"j.{name}" for name in self.columns) + ", e.payload"
            " FROM delivery_jobs AS j JOIN events AS e ON e.id = j.event_id"
            " WHERE j.id IN (SELECT value FROM json_each(?)) ORDER BY j.next_attempt_at, j.id"
        )

    def claim(self, conn: Connection, destination_id: int, owner: str, limit: int, lease_seconds: float,
              now: datetime) -> list[dict[str, Any]]:
        """Lease up to ``limit`` due jobs (in the caller's write transaction); return them with
        every column and their event's payload, times as aware datetimes."""
        at = stamp(now)
        ids = [row[0] for row in conn.exec_driver_sql(_CLAIM_IDS, (destination_id, *self.pending, at, at, limit))]
        return self.lease(conn, ids, owner, lease_seconds, now) if ids else []

    def lease(self, conn: Connection, ids: list[int], owner: str, lease_seconds: float,
              now: datetime) -> list[dict[str, Any]]:
        """Lease the picked jobs ``ids`` (``delivery.lease``: the claims of many destinations come
        this way too) and return them as ``claim`` does, due first."""
        listed = orjson.dumps(ids).decode()
        conn.exec_driver_sql(_CLAIM_LEASE, (stamp(now + timedelta(seconds=lease_seconds)), owner, listed))
        names = [*self.columns, "payload"]
        jobs = []
        for row in conn.exec_driver_sql(self.claimed, (listed,)).fetchall():
            job = dict(zip(names, row))
            for name in self.times:
                if job[name] is not None:
                    job[name] = parse_stamp(job[name])
            jobs.append(job)
        return jobs

    def finish(self, conn: Connection, owner: str, results: list[dict[str, Any]],
               attempts: list[dict[str, Any]]) -> bool:
        """Write a batch of results (``delivery.finish``'s shape) in two statements; False, with
        nothing written, on SQLite before 3.33 or when a text holds a NUL character (SQLite's
        JSON functions would cut it there): the caller then writes it the general way."""
        if not UPDATE_FROM:
            return False
        jobs = orjson.dumps([
            [r["job_id"], r["status"], r.get("tries", 1), stamp(r["next_attempt_at"]), stamp(r.get("finished_at")),
             r.get("latency_ms"), r.get("last_status"), r.get("last_error")]
            for r in results
        ]).decode()
        tried = orjson.dumps([
            [a["job_id"], a["destination_id"], stamp(a["at"]), a["outcome"], a.get("request"), a.get("status"),
             a.get("response"), a.get("error"), a.get("latency_ms")]
            for a in attempts
        ]).decode()
        if "\\u0000" in jobs or "\\u0000" in tried:
            return False
        conn.exec_driver_sql(_FINISH, (jobs, owner))
        if attempts:
            conn.exec_driver_sql(_ATTEMPTS, (tried,))
        return True
