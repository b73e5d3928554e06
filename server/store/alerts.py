"""Alert rules, their state, and the history of firings and resolutions (migration 11).

A rule's ``state`` (``ok`` | ``firing``) lives on its own row, so the change of state is the
claim: ``UPDATE alert_rules SET state = 'firing' … WHERE id = :id AND state = 'ok'`` succeeds
for exactly one evaluator, however many workers share the database; only that one records the
history row and notifies. The measures (``measure_*``) are one cheap aggregate query each, on
indexes the delivery tables already have. See docs/alerts.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import (
    JSON, Boolean, Column, Connection, Engine, Float, ForeignKey, String, Table, Text, case, func, or_,
    select, update,
)
from sqlalchemy.sql.elements import ColumnElement

from server.store import audit
from server.store.delivery import DEAD, DELIVERED, PENDING, delivery_attempts, delivery_jobs, write_transaction
from server.store.engine import read_only
from server.store.events import events
from server.store.schema import Id, UTCDateTime, metadata

OK, FIRING = "ok", "firing"
KINDS = ("failure_rate", "dead_letters", "delivery_lag", "no_events")
SOURCE_KINDS = ("no_events",)

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("destination_id", Id, nullable=True),  # the watched destination (delivery kinds)
    Column("source_id", Id, nullable=True),  # the watched source (no_events)
    Column("threshold", Float, nullable=False),  # % (failure_rate), count (dead_letters), seconds (delivery_lag)
    Column("window_s", Float, nullable=False),  # the look-back window in seconds
    # Where to tell: {"destination_id": n} (a Slack or Webhooks destination) or {"email": [addresses]}.
    Column("notify", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("state", String(10), nullable=False, default=OK),
    Column("state_changed_at", UTCDateTime(), nullable=True),
    Column("last_value", Float, nullable=True),
    Column("last_evaluated_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    sqlite_autoincrement=True,
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule_id", Id, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(10), nullable=False),  # firing | resolved
    Column("value", Float, nullable=True),
    Column("message", Text, nullable=False),
    Column("notify_status", String(10), nullable=False, default="pending"),  # pending | sent | failed
    Column("notify_error", Text, nullable=True),
    Column("evaluator", String(64), nullable=True),  # which worker made the transition
    sqlite_autoincrement=True,
)


def create_tables(conn: Connection) -> None:
    """Migration 11 (server/store/migrations.py)."""
    alert_rules.create(conn, checkfirst=True)
    alert_events.create(conn, checkfirst=True)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _rule(row) -> dict[str, Any]:
    return dict(row._mapping)


# ---------------------------------------------------------------- rules


def list_rules(engine: Engine, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    query = select(alert_rules).order_by(alert_rules.c.id)
    if enabled_only:
        query = query.where(alert_rules.c.enabled.is_(True))
    with read_only(engine) as conn:
        return [_rule(r) for r in conn.execute(query)]


def get_rule(engine: Engine, rule_id: int) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).one_or_none()
    return None if row is None else _rule(row)


# Called (with no argument) after a rule is created, changed or deleted in this process: the
# evaluator of an idle process sleeps until then (server/alerts/evaluator.py).
rules_changed: list[Callable[[], None]] = []


def announce() -> None:
    for callback in list(rules_changed):
        callback()


def create_rule(engine: Engine, values: dict[str, Any], *, actor: str) -> dict[str, Any]:
    now = utcnow()
    with write_transaction(engine) as conn:
        rule_id = conn.execute(alert_rules.insert().values(
            **values, state=OK, state_changed_at=now, created_at=now, updated_at=now)).inserted_primary_key[0]
        audit.record(conn, actor=actor, action="alert.create", subject=f"alert:{rule_id}",
                     changes={k: {"before": None, "after": v} for k, v in values.items()})
        made = _rule(conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).one())
    announce()
    return made


def update_rule(engine: Engine, rule_id: int, values: dict[str, Any], *, actor: str) -> dict[str, Any] | None:
    """Change a rule. A rule switched off, or re-aimed, starts again from ``ok`` (no resolution is sent)."""
    with write_transaction(engine) as conn:
        before = conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).first()
        if before is None:
            return None
        changes = {**values, "updated_at": utcnow()}
        if values.get("enabled") is False or {"kind", "destination_id", "source_id"} & values.keys():
            changes.update(state=OK, state_changed_at=utcnow(), last_value=None)
        conn.execute(update(alert_rules).where(alert_rules.c.id == rule_id).values(**changes))
        audit.record(conn, actor=actor, action="alert.update", subject=f"alert:{rule_id}",
                     changes={k: {"before": before._mapping[k], "after": v} for k, v in values.items()})
        changed = _rule(conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id)).one())
    announce()
    return changed


def delete_rule(engine: Engine, rule_id: int, *, actor: str) -> bool:
    with write_transaction(engine) as conn:
        conn.execute(alert_events.delete().where(alert_events.c.rule_id == rule_id))
        gone = conn.execute(alert_rules.delete().where(alert_rules.c.id == rule_id)).rowcount > 0
        if gone:
            audit.record(conn, actor=actor, action="alert.delete", subject=f"alert:{rule_id}")
    announce()
    return gone


def forget(conn: Connection, *, destination_ids: list[int], source_id: int | None = None, actor: str) -> None:
    """In the transaction that deletes a source or destinations (server/store/workspace.py; the
    caller announces after commit): rules that watch one of them are deleted, as there is
    nothing left to measure, and enabled rules that notify through a deleted destination are
    switched off (kept, to be pointed elsewhere), each with an audit entry saying why."""
    r = alert_rules.c
    watched: list[ColumnElement[bool]] = [r.destination_id.in_(destination_ids)]
    if source_id is not None:  # (== None would be IS NULL: every destination's rule)
        watched.append(r.source_id == source_id)
    for rule_id, name in conn.execute(select(r.id, r.name).where(or_(*watched))).all():
        conn.execute(alert_events.delete().where(alert_events.c.rule_id == rule_id))
        conn.execute(alert_rules.delete().where(r.id == rule_id))
        audit.record(conn, actor=actor, action="alert.delete", subject=f"alert:{rule_id}",
                     changes={"summary": f"Deleted {name!r} with what it watched"})
    # notify is JSON ({"destination_id": n} or {"email": [...]}): few rules, compared here.
    for rule_id, name, notify in conn.execute(select(r.id, r.name, r.notify).where(r.enabled.is_(True))).all():
        if (notify or {}).get("destination_id") in destination_ids:
            conn.execute(update(alert_rules).where(r.id == rule_id).values(
                enabled=False, state=OK, state_changed_at=utcnow(), last_value=None, updated_at=utcnow()))
            audit.record(conn, actor=actor, action="alert.update", subject=f"alert:{rule_id}", changes={
                "enabled": {"before": True, "after": False},
                "summary": f"Switched off {name!r}: the destination it notified through was deleted"})


# ---------------------------------------------------------------- transitions and history


def transition(engine: Engine, rule_id: int, to: str, value: float | None, message: str,
               evaluator: str) -> int | None:
    """Move an enabled rule to ``to`` if it is not there yet; the history row's id, or None if another
    evaluator (or an earlier pass) already did. The conditional UPDATE is the claim."""
    start = OK if to == FIRING else FIRING
    now = utcnow()
    with write_transaction(engine) as conn:
        claimed = conn.execute(
            update(alert_rules)
            .where(alert_rules.c.id == rule_id, alert_rules.c.state == start, alert_rules.c.enabled.is_(True))
            .values(state=to, state_changed_at=now, last_value=value, last_evaluated_at=now)
        ).rowcount
        if claimed != 1:
            return None
        return conn.execute(alert_events.insert().values(
            rule_id=rule_id, at=now, kind="firing" if to == FIRING else "resolved", value=value, message=message, notify_status="pending",
            evaluator=evaluator)).inserted_primary_key[0]


def record_value(engine: Engine, rule_id: int, value: float | None) -> None:
    """The measure of a pass that changed nothing (shown on the alerts page)."""
    with write_transaction(engine) as conn:
        conn.execute(update(alert_rules).where(alert_rules.c.id == rule_id)
                     .values(last_value=value, last_evaluated_at=utcnow()))


def record_notification(engine: Engine, event_id: int, error: str | None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(update(alert_events).where(alert_events.c.id == event_id).values(
            notify_status="failed" if error else "sent", notify_error=error))


def history(engine: Engine, rule_id: int, limit: int = 100) -> list[dict[str, Any]]:
    query = (select(alert_events).where(alert_events.c.rule_id == rule_id)
             .order_by(alert_events.c.id.desc()).limit(limit))
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


# ---------------------------------------------------------------- measures (one query each)


def measure_failure_rate(engine: Engine, destination_id: int, since: datetime) -> tuple[float, int]:
    """(% of delivery attempts since ``since`` that did not deliver, attempts): ix_delivery_attempts_dest_at."""
    a = delivery_attempts.c
    query = select(func.count(), func.sum(case((a.outcome != DELIVERED, 1), else_=0))).where(
        a.destination_id == destination_id, a.at >= since)
    with read_only(engine) as conn:
        total, failed = conn.execute(query).one()
    return (100.0 * (failed or 0) / total if total else 0.0), int(total or 0)


def measure_dead_letters(engine: Engine, destination_id: int, since: datetime) -> int:
    """Jobs of the destination that became dead letters since ``since``: ix_delivery_jobs_finished."""
    j = delivery_jobs.c
    query = select(func.count()).where(j.destination_id == destination_id, j.finished_at >= since, j.status == DEAD)
    with read_only(engine) as conn:
        return int(conn.execute(query).scalar_one())


def measure_lag(engine: Engine, destination_id: int, now: datetime) -> float:
    """Seconds the oldest undelivered (queued or retrying) job of the destination has waited since it
    was queued (a replay's jobs count from their release); 0 with none. ix_delivery_jobs_claim."""
    j = delivery_jobs.c
    query = select(func.min(j.created_at)).where(j.destination_id == destination_id, j.status.in_(PENDING))
    with read_only(engine) as conn:
        oldest = conn.execute(query).scalar_one()
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # func.min loses the column type on SQLite
        oldest = _parse(oldest)
    return max(0.0, (now - oldest).total_seconds())


def last_event_at(engine: Engine, source_id: int) -> datetime | None:
    """The newest stored event of a source: one index step on ix_events_source_id_id."""
    query = (select(events.c.received_at).where(events.c.source_id == source_id)
             .order_by(events.c.id.desc()).limit(1))
    with read_only(engine) as conn:
        return conn.execute(query).scalar_one_or_none()


def _parse(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def window_start(now: datetime, window_s: float) -> datetime:
    return now - timedelta(seconds=window_s)
