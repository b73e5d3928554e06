"""The delivery hot path's shortcuts behave as the general paths they replace (issue #18):

- the sender on its own transport writes the same bytes as through httpx's request objects, and
  reads answers the same way (gzip, another charset, Retry-After, a follow-up's JSON);
- claims (SQLite's plain statements, PostgreSQL's UPDATE … RETURNING) return every column of
  the job as SQLAlchemy reads it, plus the payload;
- results written from JSON arrays (SQLite) or arrays (PostgreSQL) leave the same rows as the
  executemany path, and a result for a lease another worker took over is still not applied;
- a batching lane holds enough jobs to keep its concurrency busy.

Real SQLite and PostgreSQL, raw HTTP servers on 127.0.0.1; no timing assertions."""

from __future__ import annotations

import asyncio
import gzip
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from test_delivery_transport import Server, keep_alive

from delivery_flow import RunningService, all_finished, append, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.delivery.sender import DELIVERED, RETRY, Sender
from server.delivery.transport import HTTP11Transport
from server.destinations.request import OutgoingRequest
from server.store import claims
from server.store import delivery as store
from server.store import delivery_sqlite, open_store
from server.store.engine import read_only

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- the sender on its own transport


async def _send_both(server: Server, requests: list[OutgoingRequest]):
    """Perform ``requests`` once through the fast path and once through httpx's objects."""
    fast = Sender(allow_private_egress=True, trust_env=False)
    general = Sender(transport=HTTP11Transport())  # a transport handed in: the httpx path
    try:
        return await fast.perform(requests), await general.perform(requests)
    finally:
        await fast.aclose()
        await general._transport.aclose()


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/json", "X-Signature": "abc"},
    {"User-Agent": "Segment.io/1.0", "Authorization": "Basic eDp5"},
    {"user-agent": "lower/1.0"},
])
def test_fast_path_writes_the_bytes_httpx_objects_write(headers):
    async def main():
        async with Server(keep_alive()) as server:
            request = OutgoingRequest("POST", server.url + "/in?a=b%20c", headers=headers, json={"x": "é"})
            fast, general = await _send_both(server, [request])
            assert fast.outcome == general.outcome == DELIVERED
            (head_fast, body_fast), (head_general, body_general) = server.requests
            assert head_fast == head_general and body_fast == body_general
            assert head_fast.split(b"\r\n")[1] == f"Host: 127.0.0.1:{server.port}".encode()
            # an empty PUT still says Content-Length: 0
            server.requests.clear()
            empty = OutgoingRequest("PUT", server.url + "/e", headers=headers, body=b"")
            await _send_both(server, [empty])
            for head, _ in server.requests:
                assert b"Content-Length: 0" in head.split(b"\r\n")

    asyncio.run(main())


# Named ids: ids made from the values would carry the gzip header's time stamp, and `make test`'s
# parallel processes, collecting a second apart, then disagree on the test's name and stop.
@pytest.mark.parametrize("answer_headers, body, text", [
    (("Content-Encoding: gzip",), gzip.compress("zipped ü".encode(), mtime=0), "zipped ü"),
    (("Content-Type: text/plain; charset=iso-8859-1",), "Grüße".encode("latin-1"), "Grüße"),
    (("Content-Type: text/plain; charset=utf-8",), "Grüße".encode(), "Grüße"),
    ((), b"\xff broken utf-8", "\ufffd broken utf-8"),
], ids=["gzip", "latin-1", "utf-8", "broken-utf-8"])
def test_fast_path_reads_answers_as_httpx_does(answer_headers, body, text):
    async def main():
        async with Server(keep_alive(body, headers=answer_headers)) as server:
            fast, general = await _send_both(server, [OutgoingRequest("POST", server.url, json={})])
            assert fast.last.response == general.last.response == text

    asyncio.run(main())


def test_fast_path_honours_retry_after_and_feeds_follow_ups_the_json_answer():
    seen = []

    def then(status, parsed):
        seen.append((status, parsed))
        return []

    async def main():
        busy = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy"
        async with Server(_answers(busy)) as server:
            fast, general = await _send_both(server, [OutgoingRequest("POST", server.url, json={})])
            assert fast.outcome == general.outcome == RETRY
            assert fast.last.retry_after == general.last.retry_after == 7.0
        async with Server(keep_alive(b'{"id": "c-1"}', headers=("Content-Type: application/json",))) as server:
            await _send_both(server, [OutgoingRequest("GET", server.url + "/find", then=then)])
        assert seen == [(200, {"id": "c-1"})] * 2

    asyncio.run(main())


def _answers(raw: bytes):
    async def handler(server: Server, reader, writer) -> None:
        while await server.read_request(reader) is not None:
            writer.write(raw)
            await writer.drain()

    return handler


# ---------------------------------------------------------------- SQLite claims and results


def _rows(engine, table, order) -> list[dict]:
    with read_only(engine) as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(order))]


def test_claims_return_every_job_column_as_sqlalchemy_reads_it(engine):
    """SQLite's plain statements and PostgreSQL's UPDATE … RETURNING give what SQLAlchemy reads."""
    source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
    sent = [make_event("track", event=f"E{i}") for i in range(5)]
    append(engine, source["id"], sent)
    with store.write_transaction(engine) as conn:
        ids = [r.id for r in conn.execute(select(store.events.c.id).order_by(store.events.c.id))]
        store.queue_jobs(conn, [(dest["id"], i) for i in ids], store.utcnow() - timedelta(seconds=1))
    claimed = store.claim(engine, dest["id"], "me", 3, 60)
    assert len(claimed) == 3
    table = _rows(engine, store.delivery_jobs, store.delivery_jobs.c.id)
    with read_only(engine) as conn:
        payloads = dict(conn.execute(select(store.events.c.id, store.events.c.payload)).all())
    for job in claimed:
        row = next(r for r in table if r["id"] == job["id"])
        assert job == {**row, "payload": payloads[row["event_id"]]}
        assert job["lease_owner"] == "me" and job["lease_until"].tzinfo is not None
    assert [j["id"] for j in claimed] == sorted(j["id"] for j in claimed)  # oldest first
    # the rest, then nothing: leased jobs are not claimed again
    assert len(store.claim(engine, dest["id"], "other", 10, 60)) == 2
    assert store.claim(engine, dest["id"], "other", 10, 60) == []


def _with_jobs(engine, events: int, destinations: int = 1, due=None) -> list[dict]:
    """Webhook destinations on one source, and a job per event for each, due at ``due`` (a second
    ago by default); returns the destinations."""
    _, dests = source_with(engine, *({"slug": "webhooks", "settings": {"url": f"http://127.0.0.1:9/{n}"}}
                                     for n in range(destinations)))
    append(engine, dests[0]["source_id"], [make_event("track", event=f"E{i}") for i in range(events)])
    with store.write_transaction(engine) as conn:
        ids = [r.id for r in conn.execute(select(store.events.c.id).order_by(store.events.c.id))]
        store.queue_jobs(conn, [(d["id"], i) for d in dests for i in ids], due or store.utcnow() - timedelta(seconds=1))
    return dests


def test_claims_of_many_destinations_return_every_job_column_as_sqlalchemy_reads_it(engine):
    """claim_many (PostgreSQL: one statement that picks, leases and reads) gives each destination's
    jobs as SQLAlchemy reads the table, with the payload, oldest first, and at most as many as
    asked; what is leased is not claimed again."""
    dests = _with_jobs(engine, 4, destinations=2)
    claimed = claims.claim_many(engine, {dests[0]["id"]: 3, dests[1]["id"]: 10}, "me", 60)
    assert {d: len(jobs) for d, jobs in claimed.items()} == {dests[0]["id"]: 3, dests[1]["id"]: 4}
    table = _rows(engine, store.delivery_jobs, store.delivery_jobs.c.id)
    with read_only(engine) as conn:
        payloads = dict(conn.execute(select(store.events.c.id, store.events.c.payload)).all())
    for jobs in claimed.values():
        assert [j["id"] for j in jobs] == sorted(j["id"] for j in jobs)  # oldest first
        for job in jobs:
            row = next(r for r in table if r["id"] == job["id"])
            assert job == {**row, "payload": payloads[row["event_id"]]}
            assert job["lease_owner"] == "me" and job["lease_until"].tzinfo is not None
    again = claims.claim_many(engine, {dests[0]["id"]: 10, dests[1]["id"]: 10}, "other", 60)
    assert {d: len(jobs) for d, jobs in again.items()} == {dests[0]["id"]: 1}


def test_claim_many_takes_the_oldest_due_jobs_across_queued_and_retrying(engine):
    """Due retries and queued jobs are one queue, oldest first (PostgreSQL reads them per status
    and merges); jobs not yet due or leased to another worker are left alone."""
    now = store.utcnow()
    (dest,) = _with_jobs(engine, 5, due=now - timedelta(seconds=10))
    with store.write_transaction(engine) as conn:
        jobs = [r.id for r in conn.execute(select(store.delivery_jobs.c.id).order_by(store.delivery_jobs.c.id))]
        table = store.delivery_jobs
        conn.execute(table.update().where(table.c.id == jobs[4])  # a retry due before them all
                     .values(status=store.RETRYING, next_attempt_at=now - timedelta(seconds=20)))
        conn.execute(table.update().where(table.c.id == jobs[3])  # a retry not due yet
                     .values(status=store.RETRYING, next_attempt_at=now + timedelta(seconds=60)))
        conn.execute(table.update().where(table.c.id == jobs[0])  # held by another worker
                     .values(lease_owner="other", lease_until=now + timedelta(seconds=60)))
    claimed = claims.claim_many(engine, {dest["id"]: 2}, "me", 60)
    assert [j["id"] for j in claimed[dest["id"]]] == [jobs[4], jobs[1]]
    rest = claims.claim_many(engine, {dest["id"]: 10}, "me", 60)
    assert [j["id"] for j in rest[dest["id"]]] == [jobs[2]]


def _results(jobs, now) -> list[dict]:
    attempt = {"at": now, "outcome": "delivered", "request": '{"method": "POST", "url": "http://x/\\"q\\""}',
               "status": 200, "response": "ok ü", "error": None, "latency_ms": 1.25}
    return [
        {"job_id": jobs[0]["id"], "destination_id": jobs[0]["destination_id"], "status": store.DELIVERED,
         "tries": 1, "next_attempt_at": now, "finished_at": now, "latency_ms": 12.5, "last_status": 200,
         "last_error": None, "attempts": [attempt]},
        {"job_id": jobs[1]["id"], "destination_id": jobs[1]["destination_id"], "status": store.RETRYING,
         "tries": 1, "next_attempt_at": now + timedelta(seconds=30), "last_status": 503,
         "last_error": "HTTP 503 — «retry»", "attempts": [{**attempt, "outcome": "retry", "status": 503,
                                                           "error": "HTTP 503", "latency_ms": None}]},
        {"job_id": jobs[2]["id"], "destination_id": jobs[2]["destination_id"], "status": store.DEAD,
         "tries": 0, "next_attempt_at": now, "finished_at": now, "last_status": None,
         "last_error": "could not build", "attempts": []},
    ]


def _finish_twice(urls: list[str], switch, monkeypatch, nul: bool) -> tuple:
    """The same result batches on two fresh databases, the fast path on (first) and off: the
    results' time, then for each database (its jobs without the columns that differ by creation
    time, its attempts)."""
    tables = []
    sent = [make_event("track", event=f"E{i}") for i in range(5)]
    now = store.utcnow()
    for url, fast in zip(urls, (True, False)):
        engine = open_store(url)
        try:
            monkeypatch.setattr(*switch, fast)
            source, (dest,) = source_with(engine, {"slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/x"}})
            append(engine, source["id"], sent)
            with store.write_transaction(engine) as conn:
                ids = [r.id for r in conn.execute(select(store.events.c.id).order_by(store.events.c.id))]
                store.queue_jobs(conn, [(dest["id"], i) for i in ids], now - timedelta(seconds=1))
            jobs = store.claim(engine, dest["id"], "me", 5, 60)
            results = _results(jobs, now)
            # the fourth job's lease was taken over by another worker: our result must not apply
            stolen = {**results[0], "job_id": jobs[3]["id"]}
            with store.write_transaction(engine) as conn:
                conn.execute(store.delivery_jobs.update().where(store.delivery_jobs.c.id == jobs[3]["id"])
                             .values(lease_owner="thief"))
            store.finish(engine, "me", [*results, stolen])
            # a NUL in a vendor's answer (SQLite's JSON functions would cut the text there)
            text = "nul \x00 inside" if nul else "another answer"
            store.finish(engine, "me", [{**results[0], "job_id": jobs[4]["id"],
                                         "attempts": [{**results[0]["attempts"][0], "response": text}]}])
            tables.append((_rows(engine, store.delivery_jobs, store.delivery_jobs.c.id),
                           _rows(engine, store.delivery_attempts, store.delivery_attempts.c.id)))
        finally:
            engine.dispose()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("created_at", "received_at", "lease_until")}
                          for r in rows]
    fast, general = ((strip(jobs), attempts) for jobs, attempts in tables)
    return now, fast, general


STATUSES = [store.DELIVERED, store.RETRYING, store.DEAD, store.QUEUED, store.DELIVERED]  # the 4th was stolen


def test_sqlite_results_from_json_arrays_match_the_executemany_path(tmp_path, monkeypatch):
    """Two identical databases, the same result batches: one through the JSON statements, one
    through SQLAlchemy's executemany (SQLite before 3.33) — the same rows."""
    urls = [f"sqlite:///{tmp_path / name}.db" for name in ("json", "executemany")]
    now, fast, general = _finish_twice(urls, (delivery_sqlite, "UPDATE_FROM"), monkeypatch, nul=True)
    assert fast == general
    jobs, attempts = fast
    assert [j["status"] for j in jobs] == STATUSES and jobs[3]["lease_owner"] == "thief"
    assert jobs[1]["attempts"] == 1 and jobs[1]["next_attempt_at"] == now + timedelta(seconds=30)
    assert attempts[0]["response"] == "ok ü" and attempts[0]["at"] == now
    assert attempts[-1]["response"] == "nul \x00 inside"


@pytest.mark.postgres
def test_postgres_results_from_arrays_match_the_executemany_path(pg, monkeypatch):
    """The same on PostgreSQL: one statement per batch from arrays, or SQLAlchemy's executemany."""
    now, fast, general = _finish_twice([pg.create_database(), pg.create_database()], (store, "POSTGRES_ARRAYS"),
                                       monkeypatch, nul=False)
    assert fast == general
    jobs, attempts = fast
    assert [j["status"] for j in jobs] == STATUSES and jobs[3]["lease_owner"] == "thief"
    assert jobs[1]["attempts"] == 1 and jobs[1]["next_attempt_at"] == now + timedelta(seconds=30)
    assert attempts[0]["response"] == "ok ü" and attempts[0]["at"] == now
    assert attempts[-1]["response"] == "another answer"


@pytest.mark.postgres
def test_postgres_records_a_vendor_answer_holding_a_nul(pg):
    """PostgreSQL's text cannot hold NUL: the answer is recorded with U+FFFD in its place, and the
    rest of the batch with it (refused, the batch failed and was retried forever)."""
    engine = open_store(pg.create_database())
    try:
        now = store.utcnow()
        (dest,) = _with_jobs(engine, 3, due=now - timedelta(seconds=1))
        jobs = store.claim(engine, dest["id"], "me", 3, 60)
        results = _results(jobs, now)
        results[1]["last_error"] = "HTTP 503 \x00 nul"
        results[1]["attempts"][0]["response"] = "body \x00 with a nul"
        store.finish(engine, "me", results)
        rows = _rows(engine, store.delivery_jobs, store.delivery_jobs.c.id)
        attempts = _rows(engine, store.delivery_attempts, store.delivery_attempts.c.id)
    finally:
        engine.dispose()
    assert [r["status"] for r in rows] == [store.DELIVERED, store.RETRYING, store.DEAD]
    assert rows[1]["last_error"] == "HTTP 503 \ufffd nul"
    assert [a["response"] for a in attempts] == ["ok ü", "body \ufffd with a nul"]


# ---------------------------------------------------------------- a batching lane keeps its concurrency busy


def test_a_batching_lane_fills_its_concurrency(engine, catalog):
    """concurrency 4, batch_size 10: a lane holding only 4 × 4 jobs could have two requests (10 + 6
    jobs) in flight; holding 4 × 4 requests' worth, it has all four."""
    lock = threading.Condition()
    state = {"in_flight": 0, "peak": 0}

    def hold(record):
        with lock:
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            lock.notify_all()
            lock.wait_for(lambda: state["in_flight"] >= 4, timeout=2)  # released at once when all four are in
            state["in_flight"] -= 1
        return 200, {}, b"ok"

    with Vendor(hold) as vendor:
        source, (dest,) = source_with(engine, {"slug": "webhooks",
                                               "settings": {"url": vendor.url + "/b", "batch_size": 10}})
        append(engine, source["id"], [make_event("track", event=f"E{i}") for i in range(200)])
        with RunningService(engine, catalog, concurrency=4):
            wait_until(lambda: all_finished(engine, dest["id"], 200), what="all delivered")
    assert state["peak"] == 4
    assert sum(len(r.json()) for r in vendor.snapshot()) == 200
