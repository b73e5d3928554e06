"""Delivery worker heartbeats, and taking over the leases of a worker that stopped beating.

Every delivery worker (in ``switchboard serve`` or ``switchboard worker``) keeps one row here and
bumps its ``beat`` counter every second. Another worker that sees the counter stand still for a
few seconds (by its own clock: no comparison of two machines' clocks), or that can tell from
``/proc`` that the process is gone, takes over its leases: the jobs lose their lease at once
and any worker claims them again (``server/delivery/heartbeat.py``). Before this, the jobs of a
worker killed with -9 waited for their leases (60 s) to run out.

``delivery_jobs.takeovers`` counts how often a job was claimed again while another worker
held it (taken over, or its lease ran out): such a job may reach the vendor twice, if the first
worker had sent it before it died. Stats and /metrics report the delivered ones as
``redelivered_after_takeover``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Engine, Integer, String, Table, inspect, select, text

from server.store.delivery import PENDING, delivery_jobs, utcnow, write_transaction
from server.store.engine import read_only
from server.store.schema import UTCDateTime, metadata

delivery_workers = Table(
    "delivery_workers",
    metadata,
    Column("owner", String(64), primary_key=True),  # the lease_owner its jobs carry
    Column("beat", BigInteger, nullable=False),
    Column("host_key", String(200), nullable=False),  # boot id + pid namespace: where pid means something
    Column("pid", Integer, nullable=False),
    Column("pid_start", String(40), nullable=False),  # the process's start time, so a reused pid is told apart
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),  # for people looking; decisions use ``beat``
)


def create_heartbeats(conn: Connection) -> None:
    """Migration 3: the heartbeat table and ``delivery_jobs.takeovers`` (a database made by
    migration 1 after these were declared has both already)."""
    delivery_workers.create(conn, checkfirst=True)
    columns = {c["name"] for c in inspect(conn).get_columns("delivery_jobs")}
    if "takeovers" not in columns:
        conn.execute(text("ALTER TABLE delivery_jobs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0"))


def beat(engine: Engine, owner: str, identity: dict[str, Any]) -> None:
    """Bump our counter (insert the row the first time, or again after another worker removed it)."""
    now = utcnow()
    with write_transaction(engine, durable=False) as conn:  # liveness, not news: engine.bookkeeping
        done = conn.execute(
            delivery_workers.update().where(delivery_workers.c.owner == owner)
            .values(beat=delivery_workers.c.beat + 1, heartbeat_at=now)
        ).rowcount
        if not done:
            conn.execute(delivery_workers.insert().values(
                owner=owner, beat=1, started_at=now, heartbeat_at=now, **identity))


def workers(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(select(delivery_workers))]


def take_over(engine: Engine, dead_owner: str) -> int:
    """Free every pending job ``dead_owner`` leased (due at once: they were due when claimed) and
    forget its row; return how many jobs. Idempotent: a second worker doing the same finds none."""
    with write_transaction(engine) as conn:
        freed = conn.execute(
            delivery_jobs.update()
            .where(delivery_jobs.c.lease_owner == dead_owner, delivery_jobs.c.status.in_(PENDING))
            .values(lease_until=None, lease_owner=None, takeovers=delivery_jobs.c.takeovers + 1)
        ).rowcount
        conn.execute(delivery_workers.delete().where(delivery_workers.c.owner == dead_owner))
    return freed


def forget(engine: Engine, owner: str) -> None:
    """A worker stopping gracefully removes its row (its leases are already released)."""
    with write_transaction(engine) as conn:
        conn.execute(delivery_workers.delete().where(delivery_workers.c.owner == owner))

