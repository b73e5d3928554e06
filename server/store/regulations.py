"""Regulations (delete / suppress a set of userIds) and the suppression list they maintain.

A regulation is a row in ``regulations``; a delete runs in the background in bounded batches,
and its progress (which store it is on, counts so far) is kept in the row, so a process that
dies mid-way leaves a ``running`` row whose lease runs out, and the next process resumes it
(the runner: ``server/privacy/runner.py``; the batches: ``server/store/erasure.py``).

``suppressions`` is the list the collector consults: one row per (user_id, source_id), with
source_id 0 meaning every source, keyed by the userId's SHA-256 (``user_key``) so that a userId
of any length an event can carry (up to its 32 KB) can be suppressed: an index on the id itself
would refuse long ones (PostgreSQL's B-tree entries stop near 2.7 KB). ``suppression_sequence`` is bumped on every change, so each
process can tell cheaply whether its cached copy is stale.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import (
    JSON, BigInteger, Column, Connection, Engine, Index, Integer, String, Table, Text, and_, delete, func, or_, select,
    update,
)

from sqlalchemy.dialects import postgresql, sqlite

from server.store import governance, notify
from server.store.engine import read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, metadata

ALL_SOURCES = 0

regulations = Table(
    "regulations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("type", String(30), nullable=False),
    Column("status", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("user_ids", JSON, nullable=False),
    Column("source_ids", JSON, nullable=True),  # None: every source
    Column("counts", JSON, nullable=False),
    Column("stage", String(60), nullable=True),  # where a running delete has got to
    Column("error", Text, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    sqlite_autoincrement=True,
)
Index("ix_regulations_status", regulations.c.status)

suppressions = Table(
    "suppressions",
    metadata,
    Column("user_key", String(64), primary_key=True),  # user_key(user_id)
    Column("source_id", Id, primary_key=True),  # ALL_SOURCES (0) = every source
    Column("user_id", Text, nullable=False),
    Column("regulation_id", Id, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

suppression_sequence = Table(
    "suppression_sequence",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)


# Events acknowledged but not stored because their user is suppressed, per source (all processes).
suppressed_event_counts = Table(
    "suppressed_event_counts",
    metadata,
    Column("source_id", Id, primary_key=True),
    Column("count", BigInteger, nullable=False),
)


def user_key(user_id: str) -> str:
    """The suppression list's key for a userId: its SHA-256 (UTF-8; surrogates kept as they came)."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def create_tables(conn: Connection) -> None:
    for table in (regulations, suppressions, suppression_sequence, suppressed_event_counts):
        table.create(conn, checkfirst=True)
    if conn.execute(select(suppression_sequence.c.id)).first() is None:
        conn.execute(suppression_sequence.insert().values(id=1, version=0))


TYPES = ("suppress", "delete", "suppress_with_delete", "unsuppress")
PENDING, RUNNING, FINISHED, FAILED = "pending", "running", "finished", "failed"
DELETES = ("delete", "suppress_with_delete")
SUPPRESSES = ("suppress", "suppress_with_delete")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def as_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
        "finished_at": _iso(row.finished_at),
        "actor": row.actor,
        "user_ids": list(row.user_ids),
        "source_ids": list(row.source_ids) if row.source_ids is not None else None,
        "counts": dict(row.counts or {}),
        "error": row.error,
    }


def bound_of(stage: str | None) -> int | None:
    """The id of the newest event a delete covers, from its stage (``log:<after>:<bound>``,
    ``warehouse:<bound>``, ``done:<bound>``): the newest event in the log when the delete was
    created. None for a delete stored before bounds were kept, until its walk starts (it then
    takes the newest event as its bound)."""
    tail = (stage or "").rsplit(":", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def _bump(conn: Connection) -> int:
    """Move the suppression list's version on (atomically: concurrent writers each get their own
    number); announce it when the transaction commits."""
    bumped = conn.execute(update(suppression_sequence).where(suppression_sequence.c.id == 1)
                          .values(version=suppression_sequence.c.version + 1)).rowcount
    if not bumped:  # the row migration 7 creates is missing (a database from a development build)
        conn.execute(suppression_sequence.insert().values(id=1, version=1))
    version = int(conn.execute(select(suppression_sequence.c.version).where(suppression_sequence.c.id == 1)).scalar_one())
    notify.SUPPRESSIONS.publish(conn, version)
    return version


def create(engine: Engine, *, type: str, user_ids: list[str], source_ids: list[int] | None, actor: str) -> dict[str, Any]:
    """Store a regulation (validated by the caller). Suppress/unsuppress take effect in this very
    transaction and finish at once; a delete is left ``pending`` for the runner."""
    now = _now()
    scopes = source_ids if source_ids else [ALL_SOURCES]
    counts: dict[str, int] = {}
    with engine.connect() as conn, conn.begin():
        # A delete covers the events acknowledged before it: the newest one now is its bound
        # (delivery lanes skip the jobs of those events from now on: server/store/erasing.py).
        stage = f"log:0:{conn.execute(select(func.max(events.c.id))).scalar() or 0}" if type in DELETES else None
        new_id = conn.execute(regulations.insert().values(
            type=type, status=PENDING if type in DELETES else FINISHED, actor=actor, user_ids=user_ids,
            source_ids=source_ids, counts={}, created_at=now, updated_at=now,
            finished_at=None if type in DELETES else now, stage=stage,
        )).inserted_primary_key[0]
        keys = {user_key(u): u for u in user_ids}
        if type in SUPPRESSES:
            existing = {(r.user_key, r.source_id) for r in conn.execute(
                select(suppressions.c.user_key, suppressions.c.source_id).where(suppressions.c.user_key.in_(keys)))}
            fresh = [{"user_key": k, "user_id": u, "source_id": s, "regulation_id": new_id, "created_at": now}
                     for k, u in keys.items() for s in scopes if (k, s) not in existing]
            if fresh:  # a concurrent regulation may insert the same pair: the first one stays
                insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(suppressions)
                conn.execute(insert.on_conflict_do_nothing(), fresh)
            counts["suppressed_users"] = len(user_ids)
            _bump(conn)
        elif type == "unsuppress":
            # Lifts the suppressions of these users for these sources (all of them: every source).
            query = delete(suppressions).where(suppressions.c.user_key.in_(keys))
            if source_ids:
                query = query.where(suppressions.c.source_id.in_(source_ids))
            counts["unsuppressed"] = conn.execute(query).rowcount
            _bump(conn)
        else:
            _bump(conn)  # a delete: wakes this process's runner at once (and others' on PostgreSQL)
        conn.execute(update(regulations).where(regulations.c.id == new_id).values(counts=counts))
        governance.record(conn, actor=actor, action="regulation", subject=f"regulation {new_id}",
                          details={"type": type, "users": len(user_ids), "source_ids": source_ids}, counts=counts)
        row = conn.execute(select(regulations).where(regulations.c.id == new_id)).one()
        published = notify.take_published(conn)  # before the connection goes back to the pool
    notify.deliver_committed(published)
    return as_json(row)


def get(engine: Engine, regulation_id: int) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(regulations).where(regulations.c.id == regulation_id)).first()
    return as_json(row) if row else None


def list_regulations(engine: Engine, *, limit: int = 100, before_id: int | None = None) -> list[dict[str, Any]]:
    query = select(regulations).order_by(regulations.c.id.desc()).limit(max(1, min(limit, 1000)))
    if before_id is not None:
        query = query.where(regulations.c.id < before_id)
    with read_only(engine) as conn:
        return [as_json(r) for r in conn.execute(query)]


# ---------------------------------------------------------------- the runner's side


def claim(engine: Engine, owner: str, lease_seconds: float) -> dict[str, Any] | None:
    """Take the oldest delete that is pending, or running under a lease that ran out (its
    process died): compare-and-set on the lease, so two processes never run one together."""
    now = _now()
    with engine.begin() as conn:
        row = conn.execute(select(regulations).where(
            regulations.c.status.in_((PENDING, RUNNING)),
            or_(regulations.c.lease_until.is_(None), regulations.c.lease_until < now),
        ).order_by(regulations.c.id).limit(1)).first()
        if row is None:
            return None
        taken = conn.execute(update(regulations).where(
            regulations.c.id == row.id,
            regulations.c.lease_until.is_(None) if row.lease_until is None else regulations.c.lease_until == row.lease_until,
        ).values(status=RUNNING, lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds),
                 updated_at=now)).rowcount
    if not taken:
        return None
    found = get(engine, row.id)
    assert found is not None
    return {**found, "stage": row.stage, "created": row.created_at}


def next_lease_end(engine: Engine) -> float | None:
    """Seconds until the earliest lease of a running delete ends (then another process may take
    it over), or None when no delete runs: how long an idle runner may sleep."""
    now = _now()
    with read_only(engine) as conn:
        end = conn.execute(select(func.min(regulations.c.lease_until)).where(
            regulations.c.status == RUNNING, regulations.c.lease_until.is_not(None))).scalar_one_or_none()
    return None if end is None else max(0.0, (end - now).total_seconds())


def save_progress(conn: Connection, regulation_id: int, owner: str, stage: str, counts: dict[str, int],
                  lease_seconds: float) -> bool:
    """Record where a delete has got to, in the transaction of the batch it just did (so a crash
    never loses or repeats a batch's counts) and renew the lease; False if the lease was lost."""
    now = _now()
    return bool(conn.execute(update(regulations).where(
        regulations.c.id == regulation_id, regulations.c.lease_owner == owner,
    ).values(stage=stage, counts=counts, updated_at=now, lease_until=now + timedelta(seconds=lease_seconds))).rowcount)


def release(engine: Engine, regulation_id: int, owner: str) -> None:
    """Give the lease back (graceful shutdown): another process may resume at once."""
    with engine.begin() as conn:
        conn.execute(update(regulations).where(regulations.c.id == regulation_id, regulations.c.lease_owner == owner)
                     .values(lease_owner=None, lease_until=None))


def finish(engine: Engine, regulation_id: int, owner: str, counts: dict[str, int], error: str | None = None) -> None:
    """Mark a delete finished (or failed). Its stage keeps the bound, and the version moves on,
    so that every process's ``ErasingList`` sees when it ended."""
    now = _now()
    with engine.connect() as conn, conn.begin():
        row = conn.execute(select(regulations).where(regulations.c.id == regulation_id)).one()
        bound = bound_of(row.stage)
        conn.execute(update(regulations).where(regulations.c.id == regulation_id).values(
            status=FAILED if error else FINISHED, counts=counts, error=error, finished_at=now, updated_at=now,
            lease_owner=None, lease_until=None, stage="done" if bound is None else f"done:{bound}"))
        governance.record(conn, actor=row.actor, action="regulation.failed" if error else "regulation.finished",
                          subject=f"regulation {regulation_id}",
                          details={"type": row.type, "users": len(row.user_ids), "error": error}, counts=counts)
        _bump(conn)
        published = notify.take_published(conn)
    notify.deliver_committed(published)


# ---------------------------------------------------------------- the suppression list, per process


def suppression_version(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(suppression_sequence.c.version).where(suppression_sequence.c.id == 1)).scalar() or 0


def read_suppressions(engine: Engine) -> tuple[int, frozenset[tuple[str, int]]]:
    with read_only(engine) as conn:
        version = conn.execute(select(suppression_sequence.c.version).where(suppression_sequence.c.id == 1)).scalar() or 0
        pairs = frozenset((r.user_id, r.source_id) for r in conn.execute(select(suppressions.c.user_id, suppressions.c.source_id)))
    return version, pairs


class SuppressionList:
    """This process's copy of the suppression list: ``(user_id, source_id)`` pairs, source 0 for
    every source. The collector asks ``suppressed(source_id, user_id)`` for each event — a set
    lookup, and nothing at all while the list is empty (the usual case).

    Kept fresh two ways, like settings: the change bus (``notify.SUPPRESSIONS``: at once in this
    process, through NOTIFY on PostgreSQL) and a version check every ``CHECK_S`` seconds (SQLite
    processes sharing a file, a NOTIFY missed while disconnected)."""

    CHECK_S = 2.0

    def __init__(self, engine: Engine):
        self.engine = engine
        self.version = -1
        self.pairs: frozenset[tuple[str, int]] = frozenset()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._counts: dict[int, int] = {}  # suppressed events not yet added to the store's counts

    def suppressed(self, source_id: int, user_id: Any) -> bool:
        pairs = self.pairs
        return bool(pairs) and isinstance(user_id, str) and ((user_id, ALL_SOURCES) in pairs or (user_id, source_id) in pairs)

    def count(self, source_id: int, n: int) -> None:
        """Note ``n`` suppressed events; written to ``suppressed_event_counts`` every CHECK_S."""
        with self._lock:
            self._counts[source_id] = self._counts.get(source_id, 0) + n

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
        if counts:
            try:
                add_suppressed_counts(self.engine, counts)
            except Exception:  # keep them for the next try
                with self._lock:
                    for source_id, n in counts.items():
                        self._counts[source_id] = self._counts.get(source_id, 0) + n
                raise

    def refresh(self, *_change: Any) -> None:
        with self._lock:
            version, pairs = read_suppressions(self.engine)
            self.version, self.pairs = version, pairs

    def check(self) -> None:
        if suppression_version(self.engine) != self.version:
            self.refresh()

    def start(self) -> "SuppressionList":
        self.refresh()
        self._unsubscribe = notify.SUPPRESSIONS.subscribe(self.refresh)
        self._thread = threading.Thread(target=self._run, name="switchboard-suppressions", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.CHECK_S):
            try:
                self.check()
                self.flush()
            except Exception:  # the store is briefly unavailable: keep the copy (and counts) we have
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._unsubscribe:
            self._unsubscribe()
        if self._thread:
            self._thread.join(5)
        try:
            self.flush()
        except Exception:
            pass


def add_suppressed_counts(engine: Engine, counts: dict[int, int]) -> None:
    with engine.begin() as conn:
        for source_id, n in counts.items():
            done = conn.execute(update(suppressed_event_counts).where(suppressed_event_counts.c.source_id == source_id)
                                .values(count=suppressed_event_counts.c.count + n)).rowcount
            if not done:
                conn.execute(suppressed_event_counts.insert().values(source_id=source_id, count=n))


def suppressed_counts(engine: Engine) -> dict[int, int]:
    with read_only(engine) as conn:
        return {r.source_id: r.count for r in conn.execute(select(suppressed_event_counts))}
