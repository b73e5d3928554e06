"""Loading into a real SQLite file and a real PostgreSQL database: every call type in its
tables, latest traits in users/accounts, schema evolution, dedupe, integrations, failures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from test_warehouse_support import as_utc_text, build_warehouse, make_event, wh  # noqa: F401

from server.store import warehouse as store
from server.store import workspace

COMMON = ["id", "anonymous_id", "user_id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts"]
CONTEXT = ["context_library_name", "context_library_version", "context_ip"]


def test_every_call_type_lands_in_its_tables(wh):
    wh.emit(
        make_event("identify", messageId="i1", userId="u1", traits={"email": "ada@example.com", "plan": "pro"}),
        make_event("group", messageId="g1", userId="u1", groupId="acme", traits={"name": "Acme", "employees": 50}),
        make_event("alias", messageId="a1", userId="u1", previousId="anon-1"),
        make_event("page", messageId="p1", name="Pricing", category="Docs",
                   properties={"url": "https://shop.example/pricing", "path": "/pricing", "title": "Pricing"}),
        make_event("screen", messageId="s1", name="Home", properties={"variant": "b"}),
        make_event("track", messageId="t1", userId="u1", event="Order Completed",
                   properties={"orderId": "o-9", "total": 30.5, "products": [{"sku": "x"}]}),
        make_event("track", messageId="t2", event="Register", properties={"plan": "Pro", "accountType": "Facebook"}),
    )
    sync = wh.sync()
    assert sync["error"] is None
    assert sync["events"] == 7
    assert sync["rows"] == {"identifies": 1, "users": 1, "groups": 1, "accounts": 1, "aliases": 1, "pages": 1,
                            "screens": 1, "tracks": 2, "order_completed": 1, "register": 1}
    assert wh.tables() == {"identifies", "users", "groups", "accounts", "aliases", "pages", "screens", "tracks",
                           "order_completed", "register"}

    assert set(wh.columns("identifies")) == set(COMMON + CONTEXT + ["email", "plan"])
    assert set(wh.columns("users")) == {"id", "received_at", "uuid_ts", *CONTEXT, "email", "plan"}
    assert set(wh.columns("groups")) == set(COMMON + CONTEXT + ["group_id", "name", "employees"])
    assert set(wh.columns("accounts")) == {"id", "received_at", "uuid_ts", *CONTEXT, "name", "employees"}
    assert set(wh.columns("aliases")) == set(COMMON + CONTEXT + ["previous_id"])
    assert set(wh.columns("pages")) == set(COMMON + CONTEXT + ["name", "category", "url", "path", "title"])
    assert set(wh.columns("screens")) == set(COMMON + CONTEXT + ["name", "category", "variant"])
    assert set(wh.columns("tracks")) == set(COMMON + CONTEXT + ["event", "event_text"])
    assert set(wh.columns("order_completed")) == set(COMMON + CONTEXT + ["event", "event_text", "order_id",
                                                                        "total", "products"])
    assert set(wh.columns("register")) == set(COMMON + CONTEXT + ["event", "event_text", "plan", "account_type"])

    assert wh.query("SELECT id, event, event_text, user_id FROM tracks ORDER BY id") == [
        ("t1", "order_completed", "Order Completed", "u1"), ("t2", "register", "Register", None)]
    (row,) = wh.query("SELECT order_id, total, products, context_library_name, timestamp, received_at "
                      "FROM order_completed")
    assert row[:4] == ("o-9", 30.5, '[{"sku":"x"}]', "analytics.js")
    assert as_utc_text(row[4]) == "2024-05-01T12:00:00.000Z"
    assert as_utc_text(row[5]) == "2024-05-01T12:00:02.000Z"
    assert wh.query("SELECT plan, account_type FROM register") == [("Pro", "Facebook")]
    assert wh.query("SELECT id, email FROM users") == [("u1", "ada@example.com")]
    assert wh.query("SELECT id, name, employees FROM accounts") == [("acme", "Acme", 50)]
    assert wh.query("SELECT group_id, name FROM groups") == [("acme", "Acme")]
    assert wh.query("SELECT previous_id, user_id FROM aliases") == [("anon-1", "u1")]
    assert wh.query("SELECT name, category, url, path FROM pages") == [
        ("Pricing", "Docs", "https://shop.example/pricing", "/pricing")]
    # The registry records every column with its type.
    registry = store.registered_columns(wh.engine, wh.destination["id"])
    assert registry["order_completed"]["total"] == "float"
    assert registry["accounts"]["employees"] == "integer"
    assert registry["tracks"]["timestamp"] == "timestamp"


def test_users_and_accounts_hold_the_latest_traits(wh):
    t0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)

    def at(seconds):
        return (t0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    wh.emit(make_event("identify", userId="u1", receivedAt=at(0), traits={"email": "old@example.com", "plan": "free",
                                                                           "company": "Initech"}),
            make_event("group", groupId="g1", receivedAt=at(0), traits={"name": "Old Name", "seats": 3}))
    wh.sync()
    # Two updates in one batch, then one in a later batch; nulls never erase a known trait.
    wh.emit(make_event("identify", userId="u1", receivedAt=at(10), traits={"plan": "team"}),
            make_event("identify", userId="u1", receivedAt=at(20), traits={"plan": "pro", "company": None}),
            make_event("group", groupId="g1", receivedAt=at(20), traits={"seats": 10}))
    wh.sync()
    # A late-arriving older call fills gaps but does not roll newer traits back.
    wh.emit(make_event("identify", userId="u1", receivedAt=at(5), traits={"plan": "ancient", "city": "Paris"}))
    sync = wh.sync()
    assert sync["error"] is None
    assert wh.query("SELECT id, email, plan, company, city FROM users") == [
        ("u1", "old@example.com", "pro", "Initech", "Paris")]
    assert wh.count("identifies") == 4
    assert wh.query("SELECT id, name, seats FROM accounts") == [("g1", "Old Name", 10)]
    assert wh.count("groups") == 2


def test_schema_evolution_new_property_adds_a_column(wh):
    wh.emit(make_event("track", event="Order Completed", properties={"total": 10}))
    wh.sync()
    assert "coupon" not in wh.columns("order_completed")
    wh.emit(make_event("track", event="Order Completed", properties={"total": 12, "coupon": "SPRING"}))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"]["order_completed"] == 1
    assert "coupon" in wh.columns("order_completed")
    assert sorted(wh.query("SELECT total, coupon FROM order_completed"), key=lambda r: r[0]) == [
        (10, None), (12, "SPRING")]


def test_type_conflicts_are_cast_or_nulled_and_noted_never_a_failed_sync(wh):
    wh.emit(make_event("track", messageId="e1", event="Checkout", properties={
        "amount": 10, "label": "first", "paid": True, "when": "2024-05-01T10:00:00Z"}))
    wh.sync()
    wh.emit(make_event("track", messageId="e2", event="Checkout", properties={
        "amount": 10.75,            # float into an integer column: not safe → null
        "label": 42,                # anything into text: cast
        "paid": "yes",              # text into boolean: null
        "when": "not a date"}))     # text into timestamp: null
    sync = wh.sync()
    assert sync["error"] is None
    assert sync["rows"] == {"tracks": 1, "checkout": 1}
    # "when" is an SQL reserved word: its column is "_when".
    assert wh.query("SELECT amount, label, paid, _when FROM checkout WHERE id = 'e2'") == [(None, "42", None, None)]
    assert [as_utc_text(r[0]) for r in wh.query("SELECT _when FROM checkout WHERE id = 'e1'")] == [
        "2024-05-01T10:00:00.000Z"]
    notes = " ".join(sync["notices"])
    for column in ("checkout.amount", "checkout.paid", "checkout._when"):
        assert column in notes
    assert "checkout.label" not in notes

    # An integer into a float column is cast.
    wh.emit(make_event("track", messageId="e3", event="Rated", properties={"score": 4.5}),
            make_event("track", messageId="e4", event="Rated", properties={"score": 3}))
    assert wh.sync()["error"] is None
    assert sorted(wh.query("SELECT id, score FROM rated")) == [("e3", 4.5), ("e4", 3.0)]


def test_replaying_the_same_events_adds_no_rows(wh):
    events = [make_event("page", name="Home"), make_event("track", event="Clicked", properties={"n": 1}),
              make_event("identify", userId="u1", traits={"email": "a@example.com"})]
    wh.emit(*events)
    first = wh.sync()
    assert first["rows"] == {"pages": 1, "tracks": 1, "clicked": 1, "identifies": 1, "users": 1}
    wh.emit(*events)  # the same messageIds logged again (a client retry past the dedupe window)
    second = wh.sync()
    assert second["events"] == 3
    assert second["rows"]["pages"] == 0 and second["rows"]["tracks"] == 0 and second["rows"]["clicked"] == 0
    assert second["rows"]["identifies"] == 0
    assert (wh.count("pages"), wh.count("tracks"), wh.count("clicked"), wh.count("identifies"),
            wh.count("users")) == (1, 1, 1, 1, 1)
    # Moving the cursor back (a crash before the cursor update) reloads nothing new either.
    with wh.engine.begin() as conn:
        conn.execute(store.warehouse_cursors.update().values(last_event_id=0))
    again = wh.sync()
    assert again["events"] == 6 and again["rows"]["tracks"] == 0 and wh.count("tracks") == 1


def test_integrations_option_and_batching(tmp_path):
    wh = build_warehouse("sqlite", tmp_path, batch_rows=2)
    wh.emit(make_event("track", messageId="keep1", event="A"),
            make_event("track", messageId="off", event="A", integrations={"Warehouse": False}),
            make_event("track", messageId="alloff", event="A", integrations={"All": False}),
            make_event("track", messageId="named", event="A", integrations={"All": False, "Warehouse": True}),
            make_event("track", messageId="keep2", event="A", integrations={"Mixpanel": False}))
    sync = wh.sync()
    assert sync["events"] == 5  # read (in batches of 2) and the cursor moved past all of them
    assert sorted(r[0] for r in wh.query("SELECT id FROM a")) == ["keep1", "keep2", "named"]
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 5


def test_column_limit_leaves_extra_columns_out_and_says_so(tmp_path):
    wh = build_warehouse("sqlite", tmp_path, column_limit=20)
    properties = {f"p{i:02d}": i for i in range(30)}
    wh.emit(make_event("track", event="Wide", properties=properties))
    sync = wh.sync()
    assert sync["error"] is None
    assert len(wh.columns("wide")) == 20
    assert any("limit of 20 columns" in n for n in sync["notices"])


def test_other_sources_events_are_not_loaded(wh):
    other = workspace.create_source(wh.engine, "Other")
    wh.emit(make_event("track", messageId="mine", event="A"))
    from test_warehouse_support import events_table, rows_for  # the same insert as the collector's

    with wh.engine.begin() as conn:
        conn.execute(events_table.insert(), rows_for(other["id"], datetime.now(timezone.utc),
                                                     [make_event("track", messageId="theirs", event="A")]))
    wh.sync()
    assert wh.query("SELECT id FROM a") == [("mine",)]


def test_a_failed_load_keeps_everything_for_the_next_sync(tmp_path, pg):
    wh = build_warehouse("postgres", tmp_path, pg)
    good_url = wh.destination["settings"]["database_url"]
    broken = dict(wh.destination["settings"], database_url=pg.url("no_such_db"))
    workspace.update_destination(wh.engine, wh.destination["id"], settings=broken)
    wh.emit(make_event("track", messageId="e1", event="A"), make_event("page", messageId="e2"))
    failed = wh.sync()
    assert failed["error"] and "no_such_db" in failed["error"]
    assert store.get_cursor(wh.engine, wh.destination["id"]) == 0
    workspace.update_destination(wh.engine, wh.destination["id"], settings=dict(broken, database_url=good_url))
    ok = wh.sync()
    assert ok["error"] is None and ok["events"] == 2
    assert wh.query("SELECT id FROM a") == [("e1",)] and wh.query("SELECT id FROM pages") == [("e2",)]
    history = store.list_syncs(wh.engine, wh.destination["id"])
    assert [bool(s["error"]) for s in history] == [False, True]


def test_a_sync_ends_even_while_events_keep_arriving(tmp_path, monkeypatch):
    """A sync loads what was logged when it started; what arrives meanwhile waits for the next."""
    wh = build_warehouse("sqlite", tmp_path, batch_rows=1)
    wh.emit(*[make_event("page", messageId=f"p{i}") for i in range(3)])
    real_read = store.read_source_after
    arrived = []

    def read_while_a_client_keeps_sending(*args, **kwargs):
        arrived.append(f"late{len(arrived)}")
        wh.emit(make_event("page", messageId=arrived[-1]))  # one new event per batch read
        return real_read(*args, **kwargs)

    monkeypatch.setattr(store, "read_source_after", read_while_a_client_keeps_sending)
    first = wh.sync()
    assert first["events"] == 3 and wh.count("pages") == 3
    monkeypatch.setattr(store, "read_source_after", real_read)
    second = wh.sync()
    assert second["events"] == len(arrived) and wh.count("pages") == 3 + len(arrived)


def test_pointing_the_destination_at_another_database_loads_everything_there(tmp_path):
    wh = build_warehouse("sqlite", tmp_path)
    wh.emit(make_event("page", messageId="p1"), make_event("track", messageId="t1", event="A"))
    assert wh.sync()["events"] == 2
    first_file = wh.sqlite_path
    wh.sqlite_path = tmp_path / "elsewhere" / "new.db"
    workspace.update_destination(wh.engine, wh.destination["id"],
                                 settings={"target": "sqlite", "sqlite_path": str(wh.sqlite_path)})
    wh.emit(make_event("page", messageId="p2"))
    moved = wh.sync()
    assert moved["events"] == 3 and moved["error"] is None
    assert any("another database" in n for n in moved["notices"])
    assert sorted(r[0] for r in wh.query("SELECT id FROM pages")) == ["p1", "p2"]
    assert wh.query("SELECT id FROM a") == [("t1",)]
    assert wh.sync()["events"] == 0  # and then it carries on normally
    wh.sqlite_path = first_file
    assert wh.count("pages") == 1  # the old file is left as it was
