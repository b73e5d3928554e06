"""Bookkeeping transactions (server/store/engine.py, ``bookkeeping``): the delivery plane's own
state commits without waiting for the disk; every other transaction, on the same pooled
connection afterwards too, still waits for it (the collector's 200 means "on disk")."""

from __future__ import annotations

from sqlalchemy import select

from server.store import delivery as store
from server.store.delivery import write_transaction


def durability(conn) -> str:
    if conn.dialect.name == "sqlite":
        return {1: "relaxed", 2: "durable"}[conn.exec_driver_sql("PRAGMA synchronous").scalar()]
    return {"off": "relaxed", "on": "durable"}[conn.exec_driver_sql("SHOW synchronous_commit").scalar()]


def test_bookkeeping_commits_relaxed_and_every_other_transaction_stays_durable(engine):
    seen, connections = [], set()
    for _ in range(3):
        with write_transaction(engine, durable=False) as conn:
            seen.append(("bookkeeping", durability(conn)))
            connections.add(id(conn.connection.dbapi_connection))
            conn.execute(store.delivery_cursors.insert().values(name=f"t{len(seen)}", event_id=len(seen)))
        with write_transaction(engine) as conn:
            seen.append(("write_transaction", durability(conn)))
            connections.add(id(conn.connection.dbapi_connection))
        with engine.begin() as conn:  # as the collector's writer and the admin API begin theirs
            seen.append(("engine.begin", durability(conn)))
            connections.add(id(conn.connection.dbapi_connection))
    assert seen == [("bookkeeping", "relaxed"), ("write_transaction", "durable"), ("engine.begin", "durable")] * 3
    assert len(connections) == 1  # one pooled connection went back and forth: the setting followed
    with engine.connect() as conn:  # and what the bookkeeping transactions wrote was committed
        names = conn.execute(select(store.delivery_cursors.c.name).where(store.delivery_cursors.c.name.like("t%"))).scalars()
        assert sorted(names) == ["t1", "t4", "t7"]


def test_a_failed_bookkeeping_transaction_leaves_the_next_one_durable(engine):
    try:
        with write_transaction(engine, durable=False) as conn:
            assert durability(conn) == "relaxed"
            raise RuntimeError("a bug in the middle of a claim")
    except RuntimeError:
        pass
    with engine.begin() as conn:
        assert durability(conn) == "durable"
