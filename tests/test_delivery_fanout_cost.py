"""Fan-out cost is flat in the number of destinations (issue #20): the store statements a worker
sends to deliver the same number of jobs do not grow when those jobs are spread over 100
destinations instead of 10.

Why counting statements: each lane used to claim for itself (three statements and a write
transaction per lane and claim, a destination read, and lock-free looks after every finished
send once it had found nothing), so a hundred destinations cost several times the statements of
ten for the same deliveries. Lanes now ask one claimer, which claims for all of them in one
transaction (``server/store/claims.py``). Timing is the benchmark's business (bench/fanout.py);
here the count is the behaviour.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import event, select

from delivery_flow import RunningService, append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.store import claims, fanout
from server.store import delivery as store
from server.store.engine import read_only

JOBS = 600
# Not counted: transaction control, and the result writer's statements (how many outcomes each of
# its transactions records depends on timing, not on the number of destinations).
RESULT_WRITER = ("BEGIN", "COMMIT", "UPDATE delivery_jobs SET status=", "UPDATE delivery_jobs SET status = json_extract",
                 "UPDATE delivery_jobs AS j SET status", "INSERT INTO delivery_attempts")

# Never counted: a transaction's durability setting, sent only when a pooled connection changes
# between durable and bookkeeping transactions (server/store/engine.py, ``bookkeeping``).
DURABILITY = ("PRAGMA synchronous", "SET LOCAL synchronous_commit")


class Statements:
    """Statements sent through ``engine`` from threads other than the test's and the heartbeat's.
    ``looks`` counts, apart, those of the worker's time-driven looks for due jobs (each poll
    interval, however many destinations), which ``timed_looks_apart`` marks."""

    def __init__(self, engine):
        self.engine, self.seen, self.looks = engine, [], 0
        self.test_thread = threading.current_thread()
        self.looking = threading.local()

    def __enter__(self) -> "Statements":
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, *args) -> None:
        if statement.startswith(DURABILITY):
            return
        thread = threading.current_thread()
        if thread is not self.test_thread and thread.name != "delivery-heartbeat":
            if getattr(self.looking, "on", False):
                self.looks += 1
            else:
                self.seen.append(statement)

    def timed_looks_apart(self, monkeypatch) -> None:
        """Count the statements of ``claims.due_among`` and ``store.due_work`` (the real ones,
        called as ever) in ``looks``: how many there are follows the run's length, not the
        number of destinations, and a loaded machine makes the run longer."""
        for module, name in ((claims, "due_among"), (store, "due_work")):
            real = getattr(module, name)

            def counted(*args, _real=real, **kwargs):
                self.looking.on = True
                try:
                    return _real(*args, **kwargs)
                finally:
                    self.looking.on = False
            monkeypatch.setattr(module, name, counted)


def queued(engine, count: int, events_per_destination: int, url: str) -> list[dict]:
    """A source with ``count`` webhook destinations and their jobs queued (one fan-out pass)."""
    source, destinations = source_with(engine, *[{"slug": "webhooks", "settings": {"url": f"{url}/in?d={i}"}}
                                                 for i in range(count)])
    append(engine, source["id"], [make_event("track", event="Fan", userId=f"u{i}") for i in range(events_per_destination)])
    fanout.ensure_cursor(engine)
    fanout.fanout_pass(engine, lambda event, kind, candidates: [d["id"] for d in candidates], fanout.GapTracker())
    return destinations


def claimed_in_thread(engine, wants: dict[int, int], owner: str) -> tuple[dict, int]:
    """claim_many's result and its statement count (run from a worker-like thread)."""
    out = {}
    with Statements(engine) as statements:
        thread = threading.Thread(target=lambda: out.update(claims.claim_many(engine, wants, owner, 60)))
        thread.start()
        thread.join()
    return out, len(statements.seen)


def test_claiming_for_100_destinations_takes_the_statements_of_claiming_for_10(engine):
    ids = [d["id"] for d in queued(engine, 110, 3, "http://127.0.0.1:9")]
    ten, ten_statements = claimed_in_thread(engine, {d: 2 for d in ids[:10]}, "w1")
    hundred, hundred_statements = claimed_in_thread(engine, {d: 2 for d in ids[10:]}, "w1")
    assert sorted(ten) == ids[:10] and sorted(hundred) == ids[10:]
    assert all(len(found) == 2 for found in [*ten.values(), *hundred.values()])  # each destination's limit
    # find, lease, read (and SQLite's BEGIN IMMEDIATE): whatever the number of destinations
    assert hundred_statements == ten_statements <= 4
    # Oldest first, leased to the claimer; the leased ones are not claimed again.
    first = jobs(engine, ids[-1])
    assert [j["lease_owner"] for j in first] == ["w1", "w1", None]
    assert [j["id"] for j in hundred[ids[-1]]] == [j["id"] for j in first[:2]]
    assert sorted(claims.due_among(engine, ids[:3])) == ids[:3]  # one job each still free
    again = claims.claim_many(engine, {ids[-1]: 5}, "w2", 60)
    assert [j["id"] for j in again[ids[-1]]] == [first[2]["id"]]
    assert claims.due_among(engine, [ids[-1]]) == []


def test_an_expired_lease_is_taken_over_by_a_claim_of_many(engine):
    (destination,) = queued(engine, 1, 1, "http://127.0.0.1:9")
    claims.claim_many(engine, {destination["id"]: 1}, "dead", 60)
    with engine.begin() as conn:
        conn.execute(store.delivery_jobs.update().values(lease_until=store.utcnow() - timedelta(seconds=1)))
    (job,) = claims.claim_many(engine, {destination["id"]: 1}, "alive", 60)[destination["id"]]
    with read_only(engine) as conn:
        owner, takeovers = conn.execute(select(store.delivery_jobs.c.lease_owner, store.delivery_jobs.c.takeovers)).one()
    assert (owner, takeovers) == ("alive", 1)
    assert job["payload"]


def deliver_all(engine, catalog, count: int, monkeypatch) -> tuple[int, int]:
    """(statements the worker sent, result writer's and timed looks' aside; requests the vendor
    got) to deliver ``JOBS`` jobs spread over ``count`` destinations."""
    with Vendor() as vendor:
        source, _ = source_with(engine, *[
            {"slug": "webhooks", "settings": {"url": f"{vendor.url}/in?d={i}"}} for i in range(count)])
        append(engine, source["id"], [make_event("track", event="Fan", userId=f"u{i}") for i in range(JOBS // count)])
        with Statements(engine) as statements, monkeypatch.context() as patch:
            statements.timed_looks_apart(patch)
            with RunningService(engine, catalog, concurrency=16):
                wait_until(lambda: sum(j["status"] == store.DELIVERED for j in jobs(engine)) == JOBS, timeout=120,
                           what=f"{JOBS} jobs delivered to {count} destinations")
        got = vendor.snapshot()
    assert sorted((r.query["d"], r.json()["messageId"]) for r in got) == sorted(
        {(r.query["d"], r.json()["messageId"]) for r in got})  # each job sent once
    return len([st for st in statements.seen if not st.startswith(RESULT_WRITER)]), len(got)


def test_delivering_the_same_jobs_to_100_destinations_costs_no_more_statements_than_to_10(engine, catalog, monkeypatch):
    ten, sent_ten = deliver_all(engine, catalog, 10, monkeypatch)
    with engine.begin() as conn:  # the same database, emptied: the second run starts like the first
        conn.execute(store.delivery_jobs.delete())
        conn.execute(store.delivery_attempts.delete())
    hundred, sent_hundred = deliver_all(engine, catalog, 100, monkeypatch)
    assert sent_ten == sent_hundred == JOBS
    # Before the claimer, a hundred lanes sent 964 such statements where ten sent 187 (a claim, a
    # destination read and looks per lane: 5×); now both send about the same: a few per claim of
    # all lanes and fan-out pass. The time-driven looks for due jobs are counted apart: they come
    # every poll interval (20 ms here), so a run that a loaded machine makes longer sends more of
    # them (full runs failed a bound on the total at 86 against 147, and at 56 against 128).
    # How many claims a run takes also follows timing (how many lanes' asks one claim gathers):
    # repeated runs gave 24–68 statements for 100 destinations and 36–72 for 10, on main as with
    # the bookkeeping commits, so the bound leaves room for that and still fails a claim per lane.
    assert hundred < 2.5 * ten, f"10 destinations: {ten} statements; 100: {hundred}"
