"""SQLite writers of one process take turns on a lock (server/store/engine.py ``WriterTurns``):
the next writer starts when the last one commits, instead of sleeping in SQLite's busy handler.

What a user would notice if this broke: a turn that is never given back stalls every later
write in the process (the collector's 200s, delivery results) for the busy timeout; a turn
given back too early sends writers back into SQLite's sleeps. Each case below ends one way a
transaction can end and checks that the next writer gets its turn at once.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from server.store import open_store
from server.store.engine import WriterTurns, read_only, writer_turns


@pytest.fixture
def store(tmp_path):
    engine = open_store(f"sqlite:///{tmp_path / 'turns.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def turns_of(engine) -> WriterTurns:
    turns = writer_turns(engine)
    assert turns is not None
    return turns


def rows(engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(text("SELECT count(*) FROM t")).scalar_one()


def test_a_second_writer_waits_for_the_turn_and_starts_when_the_first_commits(store):
    turns = turns_of(store)
    began, committed, order = threading.Event(), threading.Event(), []

    def second():
        began.wait(5)
        with store.begin() as conn:  # blocks on the turn while the first holds it
            order.append("second began")
            conn.execute(text("INSERT INTO t VALUES (2)"))

    thread = threading.Thread(target=second)
    thread.start()
    with store.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        began.set()
        thread.join(0.3)
        assert thread.is_alive() and turns.lock.locked()  # waiting for its turn, not finished
        order.append("first commits")
    committed.set()
    thread.join(5)
    assert not thread.is_alive()
    assert order == ["first commits", "second began"]
    assert rows(store) == 2
    assert not turns.lock.locked() and not turns.holders


@pytest.mark.parametrize("ending", ["commit", "rollback", "error", "close"])
def test_every_way_a_write_ends_gives_the_turn_back(store, ending):
    turns = turns_of(store)
    if ending == "commit":
        with store.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
    elif ending == "rollback":
        with store.connect() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            conn.rollback()
    elif ending == "error":
        with pytest.raises(RuntimeError):
            with store.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1)"))
                raise RuntimeError("boom")
    else:  # returned to the pool unfinished: the pool's reset rolls it back
        conn = store.connect()
        conn.execute(text("INSERT INTO t VALUES (1)"))
        conn.close()
    assert not turns.lock.locked() and not turns.holders
    done = threading.Event()

    def writer():
        with store.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (9)"))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(5)
    assert done.is_set(), "the next writer never got its turn"
    assert rows(store) == (2 if ending == "commit" else 1)


def test_readers_take_no_turn(store):
    turns = turns_of(store)
    with store.begin() as writer:
        writer.execute(text("INSERT INTO t VALUES (1)"))
        with read_only(store) as reader:  # WAL: reads run beside the writer
            assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        assert len(turns.holders) == 1
    assert not turns.lock.locked()


def test_a_writer_that_waits_past_the_busy_timeout_goes_on_without_its_turn(tmp_path):
    """The turn never makes a write fail where SQLite alone would not: past the timeout the
    writer meets SQLite's own lock (and its busy handler), as it did before turns existed."""
    engine = open_store(f"sqlite:///{tmp_path / 'short.db'}")
    turns = turns_of(engine)
    turns.timeout = 0.2
    try:
        assert turns.lock.acquire()  # a holder that never gives the turn back (a bug elsewhere)
        with engine.begin() as conn:  # no SQLite lock is held, so the write proceeds
            conn.execute(text("CREATE TABLE u (n INTEGER)"))
        assert turns.lock.locked() and not turns.holders  # it did not take (or give back) the turn
    finally:
        turns.lock.release()
        engine.dispose()
