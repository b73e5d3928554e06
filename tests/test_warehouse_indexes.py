"""The loader's own index and constraint names (server/warehouse/indexes.py): no event name can
produce a table that collides with them, every table gets its received_at index, and
warehouses loaded by older versions (the old names) keep working."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_warehouse_support import SCHEMA, build_warehouse, make_event, wh  # noqa: F401

from server.warehouse.indexes import index_name, pkey_name
from server.warehouse.naming import MAX_IDENTIFIER, event_table, identifier

LONG = "A" * 45  # older versions cut the table at 45 characters to name its index


def received_at_indexes(wh, table: str) -> list[str]:
    """Names of the indexes whose first column is received_at, on either target."""
    if wh.kind == "sqlite":
        return sorted(r[0] for r in wh.query(
            "SELECT il.name FROM pragma_index_list(%s) AS il, pragma_index_info(il.name) AS ii "
            "WHERE ii.seqno = 0 AND ii.name = 'received_at'", (table,)))
    return sorted(r[0] for r in wh.query(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = %s AND t.relname = %s AND a.attname = 'received_at'", (SCHEMA, table)))


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=90))
def test_no_table_name_can_be_an_index_or_key_name(name):
    # Table names never hold two underscores in a row; the loader's names always do.
    for table in (event_table(name), identifier(name)):
        assert "__" not in table
        for derived in (index_name(table), pkey_name(table)):
            assert "__" in derived and len(derived) <= MAX_IDENTIFIER


def test_long_tables_sharing_a_prefix_get_different_index_names():
    first, second = event_table(LONG + " one"), event_table(LONG + " two")
    assert index_name(first) != index_name(second)
    longest = [event_table("x" * 62 + c) for c in "ab"]
    assert longest[0] != longest[1] and index_name(longest[0]) != index_name(longest[1])
    assert index_name("clicked") == "clicked__received_at_idx" and pkey_name("clicked") == "clicked__pkey"


def test_events_named_like_the_loaders_own_indexes_load(wh):
    wh.emit(make_event("track", messageId="c1", event="Clicked"),
            make_event("track", messageId="s1", event="Signup"))
    assert wh.sync()["error"] is None
    wh.emit(make_event("track", messageId="c2", event="Clicked Received At Idx"),
            make_event("track", messageId="s2", event="Signup Pkey"),
            make_event("track", messageId="t1", event="Tracks Pkey"),
            make_event("track", messageId="i1", event="Clicked  Received At Idx"))
    sync = wh.sync()
    assert sync["error"] is None
    assert sync["rows"] == {"tracks": 4, "clicked_received_at_idx": 2, "signup_pkey": 1, "tracks_pkey": 1}
    for table, ids in (("clicked", ["c1"]), ("clicked_received_at_idx", ["c2", "i1"]), ("signup_pkey", ["s2"]),
                       ("tracks_pkey", ["t1"])):
        assert sorted(r[0] for r in wh.query(f'SELECT id FROM "{table}"')) == ids
    for table in wh.tables():
        assert received_at_indexes(wh, table) == [index_name(table)], table


def test_every_table_gets_its_received_at_index_even_with_a_long_shared_prefix(wh):
    wh.emit(make_event("track", event=LONG + " one"), make_event("track", event=LONG + " two"))
    assert wh.sync()["error"] is None
    tables = {event_table(LONG + " one"), event_table(LONG + " two")}
    assert tables <= wh.tables()
    for table in tables:
        assert received_at_indexes(wh, table) == [index_name(table)]


def _prepare(wh, statements) -> None:
    for statement in statements:
        wh.execute(statement)


def test_a_warehouse_loaded_by_an_older_version_keeps_working(wh):
    kind = "TIMESTAMPTZ" if wh.kind == "postgres" else "TIMESTAMP"
    second = event_table(LONG + " two")
    _prepare(wh, [
        f'CREATE TABLE clicked (id TEXT PRIMARY KEY, received_at {kind})',
        'CREATE INDEX clicked_received_at_idx ON clicked (received_at)',
        # The second of two long names: older versions gave it no index (the name was taken).
        f'CREATE TABLE {second} (id TEXT PRIMARY KEY, received_at {kind})',
    ])
    wh.emit(make_event("track", messageId="c1", event="Clicked", properties={"n": 1}),
            make_event("track", messageId="l2", event=LONG + " two"))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"]["clicked"] == 1
    assert received_at_indexes(wh, "clicked") == ["clicked_received_at_idx"]  # kept, no second one
    assert received_at_indexes(wh, second) == [index_name(second)]  # the missing one is made

    # A new table named like the old index: the old index moves to its new name.
    wh.emit(make_event("track", messageId="c2", event="Clicked Received At Idx"),
            make_event("track", messageId="c3", event="Clicked", properties={"n": 3}))
    sync = wh.sync()
    assert sync["error"] is None
    assert sync["rows"] == {"tracks": 2, "clicked_received_at_idx": 1, "clicked": 1}
    assert received_at_indexes(wh, "clicked") == [index_name("clicked")]
    assert received_at_indexes(wh, "clicked_received_at_idx") == [index_name("clicked_received_at_idx")]
    assert sorted(r[0] for r in wh.query("SELECT id FROM clicked")) == ["c1", "c3"]


@pytest.mark.postgres
def test_an_older_primary_key_name_does_not_block_a_new_table(tmp_path, pg):
    # PostgreSQL named the key of an older version's table <table>_pkey (SQLite names it
    # sqlite_autoindex_…, a prefix no table can have).
    wh = build_warehouse("postgres", tmp_path, pg)
    _prepare(wh, ['CREATE TABLE signup (id TEXT PRIMARY KEY, received_at TIMESTAMPTZ)',
                  'CREATE INDEX signup_received_at_idx ON signup (received_at)'])
    wh.emit(make_event("track", messageId="s1", event="Signup"),
            make_event("track", messageId="s2", event="Signup Pkey"))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"] == {"tracks": 2, "signup": 1, "signup_pkey": 1}
    wh.emit(make_event("track", messageId="s1", event="Signup"))  # the key still dedupes
    assert wh.sync()["rows"]["signup"] == 0 and wh.count("signup") == 1
    assert wh.query("SELECT conname FROM pg_constraint WHERE conrelid = 'signup'::regclass") == [("signup__pkey",)]
    wh.engine.dispose()
