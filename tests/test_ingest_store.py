"""The durable append on SQLite and on a real PostgreSQL: dedupe inside and across commits, the
window (expired ids are stored again, pruning forgets them), the append hook and NOTIFY, and
the readers the delivery and warehouse planes use."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import orjson
import psycopg
import pytest
from sqlalchemy import func, select

from server.store import events, notify, workspace
from server.store.engine import make_engine
from server.store.events import message_ids

DAY = 86400.0


def _rows(source_id, ids, at=None, **extra):
    at = at or datetime.now(timezone.utc)
    return events.rows_for(source_id, at, [{"messageId": m, "type": "track", "event": "E", **extra} for m in ids])


def _stored_ids(engine, source_id):
    return sorted(e["message_id"] for e in events.list_events(engine, source_id, limit=1000))


def test_append_stores_rows_in_order_and_readers_see_them(engine):
    source = workspace.create_source(engine, "web")
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    flags = events.append(engine, _rows(source["id"], ["a", "b", "c"], at=at, properties={"n": 1}),
                          dedupe_window=DAY)
    assert flags == [True, True, True]
    after = events.read_after(engine, 0)
    assert [e["message_id"] for e in after] == ["a", "b", "c"]
    assert after[0]["received_at"] == at
    assert after[0]["event"] == {"messageId": "a", "type": "track", "event": "E", "properties": {"n": 1}}
    newest = events.list_events(engine, source["id"], limit=2)
    assert [e["message_id"] for e in newest] == ["c", "b"]
    assert events.get_event(engine, after[1]["id"])["message_id"] == "b"
    assert events.count_events(engine, source["id"]) == 3


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_times_are_written_as_sqlalchemy_writes_them(engine):
    """The fast path formats times itself; the readers (SQLAlchemy) must read them back."""
    processor = events.events.c.received_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    for moment in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), datetime(999, 12, 31, 23, 59, 59, 1),
                   datetime(2026, 6, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)):
        assert events._sqlite_time(moment) == processor(moment)


def test_the_stored_payload_is_exactly_the_serialised_event(engine):
    """Payloads travel as raw bytes (SQLite: one blob sliced per row; PostgreSQL: bytea read as
    UTF-8): the column must hold the very text orjson wrote, whatever characters it holds, and
    each row its own slice — including after a duplicate is left out of the middle."""
    source = workspace.create_source(engine, "web")
    odd = {"q": 'quote " backslash \\ newline \n tab \t nul \x00 \u2028', "accents": "é — 漢字 😀",
           "n": [1, -0.5, 1e300, 2**53], "empty": {}, "nested": [[], [{}]]}
    events.append(engine, _rows(source["id"], ["seen"]), dedupe_window=DAY)
    rows = _rows(source["id"], ["a", "seen", "b", "a", "c"], properties=odd)
    rows[2]["payload"] = orjson.dumps({"messageId": "b", "type": "track", "event": "E", "x": "y" * 5000})
    assert events.append(engine, rows, dedupe_window=DAY) == [True, False, True, False, True]
    with engine.connect() as conn:
        stored = dict(conn.execute(select(events.events.c.message_id, events.events.c.payload)).all())
    assert stored["a"] == rows[0]["payload"].decode() and stored["c"] == rows[4]["payload"].decode()
    assert stored["b"] == rows[2]["payload"].decode()
    assert orjson.loads(stored["a"])["properties"] == odd


def test_duplicates_within_one_append_and_across_appends_are_stored_once(engine):
    source = workspace.create_source(engine, "web")
    assert events.append(engine, _rows(source["id"], ["x", "y", "x"]), dedupe_window=DAY) == [True, True, False]
    assert events.append(engine, _rows(source["id"], ["y", "z"]), dedupe_window=DAY) == [False, True]
    assert _stored_ids(engine, source["id"]) == ["x", "y", "z"]


def test_the_same_message_id_on_two_sources_is_two_events(engine):
    a = workspace.create_source(engine, "a")
    b = workspace.create_source(engine, "b")
    assert events.append(engine, _rows(a["id"], ["m"]) + _rows(b["id"], ["m"]), dedupe_window=DAY) == [True, True]
    assert _stored_ids(engine, a["id"]) == ["m"] and _stored_ids(engine, b["id"]) == ["m"]


def test_after_the_window_the_same_id_is_stored_again_even_before_pruning(engine):
    source = workspace.create_source(engine, "web")
    now = datetime.now(timezone.utc)
    events.append(engine, _rows(source["id"], ["old"], at=now - timedelta(hours=25)), dedupe_window=DAY)
    events.append(engine, _rows(source["id"], ["recent"], at=now - timedelta(hours=23)), dedupe_window=DAY)
    # "old" was stored 25 h ago (window over: stored again); "recent" 23 h ago (a duplicate).
    assert events.append(engine, _rows(source["id"], ["old", "recent", "new"]), dedupe_window=DAY) == [
        True, False, True,
    ]
    # Storing "old" again restarted its window.
    assert events.append(engine, _rows(source["id"], ["old"]), dedupe_window=DAY) == [False]
    assert _stored_ids(engine, source["id"]) == ["new", "old", "old", "recent"]


def test_prune_forgets_only_ids_older_than_the_window(engine):
    source = workspace.create_source(engine, "web")
    now = datetime.now(timezone.utc)
    events.append(engine, _rows(source["id"], ["a", "b"], at=now - timedelta(hours=30)), dedupe_window=DAY)
    events.append(engine, _rows(source["id"], ["c"], at=now - timedelta(hours=1)), dedupe_window=DAY)
    assert events.prune_message_ids(engine, dedupe_window=DAY) == 2
    with engine.connect() as conn:
        assert conn.execute(select(message_ids.c.message_id)).scalars().all() == ["c"]
    assert events.count_events(engine) == 3  # the log itself is untouched


def test_on_events_appended_gets_the_max_id_after_commit(engine):
    source = workspace.create_source(engine, "web")
    seen: list[int] = []

    def listener(max_id):
        # Called after commit: a fresh connection already sees the rows.
        seen.append((max_id, len(events.read_after(engine, 0))))

    unsubscribe = notify.EVENTS.subscribe(listener)
    try:
        events.append(engine, _rows(source["id"], ["a", "b"]), dedupe_window=DAY)
        events.append(engine, _rows(source["id"], ["a"]), dedupe_window=DAY)  # only a duplicate: no call
        events.append(engine, _rows(source["id"], ["c"]), dedupe_window=DAY)
    finally:
        unsubscribe()
    ids = [e["id"] for e in events.read_after(engine, 0)]
    assert seen == [(ids[1], 2), (ids[2], 3)]
    events.append(engine, _rows(source["id"], ["d"]), dedupe_window=DAY)
    assert len(seen) == 2  # unsubscribed


def test_announce_appended_relays_another_process_payload(engine):
    seen: list[int] = []
    unsubscribe = notify.EVENTS.subscribe(seen.append)
    try:
        notify.EVENTS.receive("42")
        notify.EVENTS.receive("")
    finally:
        unsubscribe()
    assert seen == [42, 0]


@pytest.mark.postgres
def test_postgres_notifies_switchboard_events_on_commit(pg):
    url = pg.create_database()
    engine = make_engine(url)
    from server.store.migrations import migrate

    migrate(engine)
    source = workspace.create_source(engine, "web")
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN switchboard_events")
        events.append(engine, _rows(source["id"], ["a", "b"]), dedupe_window=DAY)
        events.append(engine, _rows(source["id"], ["a"]), dedupe_window=DAY)  # duplicate only: silent
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
    engine.dispose()
    assert payloads == [str(events.read_after(engine, 0)[-1]["id"])]


def test_concurrent_appends_of_the_same_ids_store_each_once(engine):
    """Several writers (threads here, processes in production) racing on the same ids: the
    unique key in message_ids lets exactly one of them store each id."""
    source = workspace.create_source(engine, "web")
    ids = [f"m{i}" for i in range(200)]
    results: list[list[bool]] = []
    errors: list[BaseException] = []

    def write():
        try:
            results.append(events.append(engine, _rows(source["id"], ids), dedupe_window=DAY))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(sum(r) for r in results) == 200
    assert _stored_ids(engine, source["id"]) == sorted(ids)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(message_ids)).scalar_one() == 200


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_append_is_one_round_trip_with_no_begin_or_commit(engine, tmp_path):
    """The append is one statement in autocommit: psycopg sends neither BEGIN nor COMMIT, so a
    group costs one round trip (the wire trace of the writer's connection shows it)."""
    source = workspace.create_source(engine, "web")
    with engine.connect() as conn:
        events.append(conn, _rows(source["id"], ["warm"]), dedupe_window=DAY)
        trace = tmp_path / "wire.txt"
        pgconn = conn.connection.dbapi_connection.pgconn
        with trace.open("w") as handle:
            pgconn.trace(handle.fileno())
            assert events.append(conn, _rows(source["id"], ["a", "b"]), dedupe_window=DAY) == [True, True]
            pgconn.untrace()
        sent = [line for line in trace.read_text().splitlines() if "\tF\t" in line]
    assert any("INSERT INTO message_ids" in line for line in sent)
    assert not [line for line in sent if "BEGIN" in line or "COMMIT" in line]
    assert sum(1 for line in sent if "\tSync" in line or "\tQuery\t" in line) == 1  # one round trip
    assert _stored_ids(engine, source["id"]) == ["a", "b", "warm"]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_connection_leaves_the_append_transactional_again(engine):
    """After an append (autocommit for its one statement) the writer's connection runs
    transactions as before: what a rolled-back transaction wrote is gone."""
    source = workspace.create_source(engine, "web")
    with engine.connect() as conn:
        events.append(conn, _rows(source["id"], ["a"]), dedupe_window=DAY)
        with pytest.raises(RuntimeError), conn.begin():
            conn.execute(message_ids.delete())
            raise RuntimeError("roll back")
        assert conn.execute(select(func.count()).select_from(message_ids)).scalar_one() == 1
        conn.rollback()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_failed_append_stores_nothing_and_the_connection_goes_on(engine):
    """A statement that fails (a payload PostgreSQL cannot read as UTF-8) stores none of its
    rows, claims none of its ids, and the same connection takes the next append."""
    source = workspace.create_source(engine, "web")
    bad = _rows(source["id"], ["ok-1", "broken"])
    bad[1]["payload"] = b'{"text":"\xff"}'
    with engine.connect() as conn:
        with pytest.raises(psycopg.Error):
            events.append(conn, bad, dedupe_window=DAY)
        assert events.append(conn, _rows(source["id"], ["ok-1", "ok-2"]), dedupe_window=DAY) == [True, True]
    assert _stored_ids(engine, source["id"]) == ["ok-1", "ok-2"]


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_postgres_append_refuses_a_connection_inside_a_transaction(engine):
    """A caller's open transaction is never committed behind its back by the autocommit append."""
    source = workspace.create_source(engine, "web")
    with engine.connect() as conn, conn.begin():
        conn.execute(select(1))
        with pytest.raises(psycopg.ProgrammingError):
            events.append(conn, _rows(source["id"], ["a"]), dedupe_window=DAY)
