"""server/ingest/off_loop.py over real sockets (``switchboard serve`` on 127.0.0.1): while large
bodies are being decompressed and parsed, the server keeps answering everybody else."""

from __future__ import annotations

import gzip
import threading

import httpx

HEAVY_BODIES = 16
# 4 KB of gzip, 900 KB of JSON: 300,000 empty arrays, tens of ms of parsing each. An unknown
# write key: refused once parsed (nothing to store, so only the parse is measured).
HEAVY = gzip.compress(b'{"writeKey":"nope","batch":[],"x":[' + b",".join([b"[]"] * 300_000) + b"]}", 9)
ZIPPED = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def test_healthz_is_answered_while_large_bodies_wait_to_be_parsed(live_server_factory):
    server = live_server_factory(SWITCHBOARD_DELIVERY_WORKERS="false")
    first = httpx.post(f"{server.url}/v1/batch", content=HEAVY, headers=ZIPPED, timeout=60)
    assert first.status_code == 401 and first.json()["code"] == "invalid_write_key"  # and now cached as unknown

    answered: list[int] = []
    lock, one_answered = threading.Lock(), threading.Event()

    def send(n: int) -> None:
        response = httpx.post(f"{server.url}/v1/batch", content=HEAVY, headers=ZIPPED, timeout=120)
        assert response.status_code == 401
        with lock:
            answered.append(n)
        one_answered.set()

    senders = [threading.Thread(target=send, args=(n,)) for n in range(HEAVY_BODIES)]
    for sender in senders:
        sender.start()
    # Once one is answered, the others have long arrived (4 KB each) and wait for their parse.
    assert one_answered.wait(120)
    health = httpx.get(f"{server.url}/healthz", timeout=120)
    with lock:
        answered_before_health = len(answered)
    for sender in senders:
        sender.join(120)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert len(answered) == HEAVY_BODIES
    # Parsed on the event loop, every body that had arrived was parsed before the loop read
    # another socket: /healthz came after all 16. Now it waits for at most the parse under way
    # (and a few more on a loaded machine), not for the queue.
    assert answered_before_health <= HEAVY_BODIES - 6, answered_before_health
