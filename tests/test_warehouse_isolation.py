"""The safety net (server/warehouse/isolation.py, data_errors.py): an event the warehouse refuses
because of its data is skipped, recorded and reported, everything else loads and the cursor
moves on; a failure of the warehouse itself (lock, lost connection, full disk) still fails the
sync and skips nothing."""

from __future__ import annotations

import sqlite3

import pytest
from test_warehouse_support import build_warehouse, make_event, wh  # noqa: F401

from server.store import warehouse as store
from server.store import warehouse_skipped
from server.warehouse import batch as batch_module
from server.warehouse import loader

UNLUCKY = (13, 113)  # the warehouse's own rule (a constraint added by hand) refuses these


def refuse_unlucky(wh) -> None:
    """A rule added in the warehouse itself, after the loader created the table."""
    if wh.kind == "sqlite":
        wh.execute("CREATE TRIGGER unlucky BEFORE INSERT ON clicked WHEN NEW.n % 100 = 13 "
                 "BEGIN SELECT RAISE(ABORT, 'unlucky number'); END")
    else:
        wh.execute("ALTER TABLE clicked ADD CONSTRAINT unlucky CHECK (n % 100 <> 13)")


def allow_unlucky(wh) -> None:
    wh.execute("DROP TRIGGER unlucky" if wh.kind == "sqlite" else "ALTER TABLE clicked DROP CONSTRAINT unlucky")


def clicks(numbers) -> list[dict]:
    return [make_event("track", messageId=f"click-{n}", event="Clicked", userId=f"u{n}", properties={"n": n,
                       "email": f"user{n}@example.com"}) for n in numbers]


def test_an_event_the_warehouse_refuses_is_skipped_and_everything_else_loads(wh):
    wh.emit(*clicks([1000]))
    assert wh.sync()["error"] is None
    refuse_unlucky(wh)
    wh.emit(*clicks(range(200)), make_event("page", messageId="page-1"),
            make_event("identify", messageId="id-1", userId="u1", traits={"plan": "pro"}))
    sync = wh.sync()
    assert sync["error"] is None and sync["events"] == 202 and sync["skipped"] == 2
    assert sync["rows"] == {"tracks": 200, "clicked": 198, "pages": 1, "identifies": 1, "users": 1}
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 203
    assert sorted(r[0] for r in wh.query("SELECT n FROM clicked WHERE n IN (12, 13, 14, 112, 113, 114)")) == [
        12, 14, 112, 114]
    assert wh.count("tracks") == 201  # only the refusing table misses them

    # The sync says which events, where and why; the skipped list keeps them.
    assert sync["notices"][0] == ("2 events skipped: the warehouse refused them (see the skipped events; "
                                  "re-load them once the cause is fixed)")
    reason = "IntegrityError: unlucky number" if wh.kind == "sqlite" else (
        'CheckViolation: new row for relation "clicked" violates check constraint "unlucky"')
    for n in UNLUCKY:
        event_id = 2 + n  # the first click is event 1
        assert f"skipped event click-{n} (#{event_id}) in clicked: {reason}" in sync["notices"]
    entries, total = warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])
    assert total == 2
    assert [(e["event_id"], e["message_id"], e["table"], e["error"], e["sync_id"]) for e in entries] == [
        (115, "click-113", "clicked", reason, sync["id"]), (15, "click-13", "clicked", reason, sync["id"])]
    assert not any("@example.com" in e["error"] for e in entries)  # no row values (PostgreSQL's DETAIL)

    # Nothing is stuck: the next syncs load what arrives, and skip nothing twice.
    wh.emit(*clicks([500]))
    later = wh.sync()
    assert later["error"] is None and later["skipped"] == 0 and later["rows"]["clicked"] == 1
    assert warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])[1] == 2


def test_a_skipped_batch_read_again_adds_no_rows_and_no_entries(wh):
    """A crash after the load but before the cursor moved: the batch is read again."""
    wh.emit(*clicks([1000]))
    wh.sync()
    refuse_unlucky(wh)
    wh.emit(*clicks(range(20)))
    wh.sync()
    with wh.engine.begin() as conn:
        conn.execute(store.warehouse_cursors.update().values(last_event_id=0))
    again = wh.sync()
    assert again["error"] is None and again["events"] == 21 and again["skipped"] == 1
    assert again["rows"] == {"tracks": 0, "clicked": 0}
    assert wh.query("SELECT count(*), count(DISTINCT id) FROM clicked")[0] == (20, 20)
    assert warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])[1] == 1


def test_a_table_that_refuses_every_row_skips_its_events_and_loads_the_other_tables(wh):
    wh.emit(make_event("track", messageId="a1", event="A"))
    wh.sync()
    if wh.kind == "sqlite":
        wh.execute("CREATE TRIGGER no_more BEFORE INSERT ON a BEGIN SELECT RAISE(ABORT, 'read only'); END")
    else:
        wh.execute("CREATE FUNCTION no_more() RETURNS trigger LANGUAGE plpgsql AS "
                 "$$ BEGIN RAISE EXCEPTION 'read only'; END $$")
        wh.execute("CREATE TRIGGER no_more BEFORE INSERT ON a FOR EACH ROW EXECUTE FUNCTION no_more()")
    wh.emit(*[make_event("track", messageId=f"a{i}", event="A") for i in range(2, 7)],
            make_event("track", messageId="b1", event="B"))
    sync = wh.sync()
    assert sync["error"] is None and sync["skipped"] == 5
    assert sync["rows"] == {"tracks": 6, "a": 0, "b": 1}
    assert wh.query("SELECT id FROM a") == [("a1",)]
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 7


def test_an_event_that_breaks_the_transform_is_skipped(wh, monkeypatch):
    real = batch_module.rows_for_event

    def fragile(event, received_at, notice):
        if event["messageId"] == "bad":
            raise OverflowError("date value out of range")  # as a time near year 1 once did
        return real(event, received_at, notice)

    monkeypatch.setattr(batch_module, "rows_for_event", fragile)
    wh.emit(make_event("page", messageId="ok-1"), make_event("page", messageId="bad"),
            make_event("page", messageId="ok-2"))
    sync = wh.sync()
    assert sync["error"] is None and sync["skipped"] == 1 and sync["rows"] == {"pages": 2}
    assert "skipped event bad (#2): OverflowError: date value out of range" in sync["notices"]
    entries, _ = warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])
    assert [(e["event_id"], e["table"]) for e in entries] == [(2, "")]


# ---------------------------------------------------------------- the warehouse itself fails


def _assert_nothing_skipped(wh, sync, needle: str) -> None:
    assert sync["error"] and needle in sync["error"], sync["error"]
    assert sync["skipped"] == 0 and store.get_cursor(wh.engine, wh.destination["id"]) == 1
    assert warehouse_skipped.list_skipped(wh.engine, wh.destination["id"])[1] == 0


def test_a_locked_sqlite_warehouse_fails_the_sync_and_skips_nothing(tmp_path, monkeypatch):
    wh = build_warehouse("sqlite", tmp_path)
    wh.emit(make_event("page", messageId="p0"))
    wh.sync()
    real_connect = sqlite3.connect
    monkeypatch.setattr(loader.sqlite3, "connect", lambda *a, **kw: real_connect(*a, **{**kw, "timeout": 0.2}))
    wh.emit(*clicks(range(3)), make_event("page", messageId="p1"))
    holder = sqlite3.connect(wh.sqlite_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the file
    try:
        _assert_nothing_skipped(wh, wh.sync(), "database is locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ok = wh.sync()
    assert ok["error"] is None and ok["events"] == 4 and ok["rows"] == {"tracks": 3, "clicked": 3, "pages": 1}


@pytest.mark.postgres
@pytest.mark.parametrize("failure, needle", [
    ("PERFORM pg_terminate_backend(pg_backend_pid())", "terminating connection"),  # the connection is lost
    ("RAISE EXCEPTION 'no space left' USING ERRCODE = 'disk_full'", "no space left"),
    ("RAISE EXCEPTION 'busy' USING ERRCODE = 'lock_not_available'", "busy"),
    ("RAISE EXCEPTION 'no' USING ERRCODE = 'insufficient_privilege'", "no"),
])
def test_a_postgresql_warehouse_that_fails_for_itself_skips_nothing(tmp_path, pg, failure, needle):
    wh = build_warehouse("postgres", tmp_path, pg)
    wh.emit(make_event("page", messageId="p0"))
    wh.sync()
    wh.execute(f"CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {failure}; RETURN NEW; END $$")
    wh.execute("CREATE TRIGGER fail BEFORE INSERT ON pages FOR EACH ROW EXECUTE FUNCTION fail()")
    wh.emit(*clicks(range(3)), make_event("page", messageId="p1"))
    _assert_nothing_skipped(wh, wh.sync(), needle)
    wh.execute("DROP TRIGGER fail ON pages")
    ok = wh.sync()
    assert ok["error"] is None and ok["events"] == 4 and ok["rows"]["pages"] == 1 and ok["rows"]["clicked"] == 0
    assert wh.count("clicked") == 3  # loaded by the failed sync before pages failed, kept once
    wh.engine.dispose()
