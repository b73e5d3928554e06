"""PostgreSQL's 8,160-byte row limit (server/warehouse/row_width.py): an event with more values
than one PostgreSQL row holds is loaded with the values that fit, the rest left out with a
notice, instead of failing every later sync; wide but sparse tables lose nothing."""

from __future__ import annotations

import pytest
from test_warehouse_support import build_warehouse, make_event

from server.warehouse.row_width import PG_MAX_ROW_BYTES, row_bytes

INTEGERS = {f"p{i:04d}": i for i in range(1200)}
TEXTS = {f"t{i:03d}": f"value {i:03d} of twenty"[:20] for i in range(470)}  # 20 characters each


@pytest.fixture
def pg_wide(tmp_path, pg):
    wh = build_warehouse("postgres", tmp_path, pg, column_limit=1600)
    yield wh
    wh.engine.dispose()


@pytest.mark.postgres
def test_an_event_with_1200_integer_properties_loads_the_values_that_fit(pg_wide):
    wh = pg_wide
    wh.emit(make_event("track", messageId="w1", event="Wide", properties=INTEGERS),
            make_event("track", messageId="after", event="Narrow"))
    for chunk in range(12):  # as many columns, but 100 values per event: nothing left out
        wh.emit(make_event("track", event="Sparse",
                           properties={k: v for k, v in INTEGERS.items() if chunk * 100 <= v < chunk * 100 + 100}))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"] == {"tracks": 14, "wide": 1, "narrow": 1, "sparse": 12}
    assert len([c for c in wh.columns("sparse") if c.startswith("p")]) == 1200
    properties = [c for c in wh.columns("wide") if c.startswith("p")]
    # The first properties (in table order) are kept, the rest were never created.
    assert 900 < len(properties) < 1015 and properties == sorted(INTEGERS)[:len(properties)]
    (row,) = wh.query(f"SELECT id, {', '.join(properties)} FROM wide")
    assert row == ("w1", *range(len(properties)))
    [notice] = sync["notices"]
    assert notice.startswith(f"wide: 1 row would pass PostgreSQL's 8,160-byte row limit; values left out "
                             f"(stored as null) in {1200 - len(properties)} columns: p{len(properties):04d}, ")
    assert wh.query("SELECT id FROM narrow") == [("after",)]

    # The next wide event: the same values fit, the same are left out; the table is complete.
    wh.emit(make_event("track", messageId="w2", event="Wide", properties=INTEGERS))
    again = wh.sync()
    assert again["error"] is None and again["rows"]["wide"] == 1
    assert [c for c in wh.columns("wide") if c.startswith("p")] == properties


@pytest.mark.postgres
def test_text_properties_count_too(pg_wide):
    # 470 text values of 20 bytes: more than PostgreSQL can keep in one row (TOAST leaves up to
    # 24 bytes of each behind), well below the column limit.
    wh = pg_wide
    wh.emit(make_event("track", messageId="t1", event="Texty", properties=TEXTS))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"]["texty"] == 1
    kept = [c for c in wh.columns("texty") if c.startswith("t") and c != "timestamp"]
    assert 300 < len(kept) < 470
    assert any(n.startswith("texty: 1 row would pass") for n in sync["notices"])


@pytest.mark.postgres
def test_a_row_the_estimate_accepts_always_fits(pg):
    """The estimate against PostgreSQL itself: rows just inside the limit, of every type and
    text length around the TOAST thresholds, mixed so that alignment padding matters."""
    import psycopg

    kinds = {"integer": "BIGINT", "float": "DOUBLE PRECISION", "boolean": "BOOLEAN", "text": "TEXT"}
    samples = {"integer": 7, "float": 1.5, "boolean": True}
    with psycopg.connect(pg.create_database().replace("+psycopg", ""), autocommit=True) as db:
        for pattern in (["integer"], ["text"], ["text", "integer"], ["boolean", "float"], ["text", "boolean", "integer"]):
            for length in (1, 16, 17, 22, 23, 24, 40, 300):
                types: list[str] = []
                values: list = []
                while True:
                    kind = pattern[len(types) % len(pattern)]
                    value = samples.get(kind, "é" * (length // 2) + "x" * (length - length // 2 * 2))
                    if row_bytes(types + [kind], values + [value]) > PG_MAX_ROW_BYTES or len(types) == 1600:
                        break
                    types.append(kind)
                    values.append(value)
                db.execute("DROP TABLE IF EXISTS t")
                db.execute(f"CREATE TABLE t ({', '.join(f'c{i} {kinds[k]}' for i, k in enumerate(types))})")
                marks = ", ".join(["%s"] * len(values))
                db.execute(f"INSERT INTO t VALUES ({marks})", values)  # raises if the estimate were short
                # The row PostgreSQL took is the one written, whole.
                assert types and db.execute("SELECT * FROM t", prepare=False).fetchall() == [tuple(values)], (pattern, length)
