"""LISTEN/NOTIFY between processes: a notification committed by one process reaches the
callbacks of a listener in another process within a second, also after the listener's
connection was killed, and nothing is sent for a transaction that rolls back."""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from sqlalchemy import text

from server.store import open_store
from server.store.notify import EVENTS_CHANNEL, SETTINGS_CHANNEL, NotifyListener, notify

# A separate process: a listener on both channels printing what it receives, one line each.
LISTENER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from server.store.notify import CHANNELS, NotifyListener
    listener = NotifyListener(sys.argv[1])
    for channel in CHANNELS:
        listener.subscribe(channel, lambda payload, c=channel: print(f"{c} {payload}", flush=True))
    listener.on_reconnect(lambda: print("reconnected -", flush=True))
    listener.start()
    assert listener.wait_connected(10)
    print("ready -", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    listener.stop()
    """
)


class ListenerProcess:
    def __init__(self, url: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", LISTENER_SCRIPT, url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[tuple[float, str, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            channel, _, payload = line.rstrip("\n").partition(" ")
            self.lines.put((time.monotonic(), channel, payload))

    def next(self, timeout: float = 10.0) -> tuple[float, str, str]:
        return self.lines.get(timeout=timeout)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


@pytest.fixture
def pg_url(pg):
    return pg.create_database()


@pytest.fixture
def listener_process(pg_url):
    open_store(pg_url).dispose()
    proc = ListenerProcess(pg_url)
    assert proc.next(20)[1] == "ready"
    yield proc
    proc.close()
    assert proc.process.returncode == 0


@pytest.mark.postgres
def test_notify_reaches_another_process_within_a_second(pg_url, listener_process):
    engine = open_store(pg_url)
    try:
        for i in range(5):
            sent = time.monotonic()
            with engine.begin() as conn:
                notify(conn, SETTINGS_CHANNEL, f"{i}:key{i}:{i + 1}")
            at, channel, payload = listener_process.next()
            assert (channel, payload) == (SETTINGS_CHANNEL, f"{i}:key{i}:{i + 1}")
            assert at - sent < 1.0, f"notification took {at - sent:.3f}s"
        with engine.begin() as conn:
            notify(conn, EVENTS_CHANNEL, "42")
        assert listener_process.next()[1:] == (EVENTS_CHANNEL, "42")
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_rolled_back_transaction_announces_nothing(pg_url, listener_process):
    engine = open_store(pg_url)
    try:
        with engine.connect() as conn:
            notify(conn, SETTINGS_CHANNEL, "1:rolled-back:9")
            conn.rollback()
        with engine.begin() as conn:
            notify(conn, SETTINGS_CHANNEL, "1:committed:10")
        # Notifications arrive in commit order: the first one we see is the committed one.
        assert listener_process.next()[1:] == (SETTINGS_CHANNEL, "1:committed:10")
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_listener_reconnects_after_its_connection_is_killed(pg_url, listener_process):
    engine = open_store(pg_url)
    try:
        with engine.begin() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'switchboard-notify' AND datname = current_database()"
            )).scalar_one()
        assert killed == 1
        assert listener_process.next()[1] == "reconnected"
        with engine.begin() as conn:
            notify(conn, EVENTS_CHANNEL, "after-reconnect")
        assert listener_process.next()[1:] == (EVENTS_CHANNEL, "after-reconnect")
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_failing_callback_does_not_silence_the_others(pg_url):
    open_store(pg_url).dispose()
    got: queue.Queue[str] = queue.Queue()
    listener = NotifyListener(pg_url)

    def broken(payload: str) -> None:
        raise RuntimeError("subscriber bug")

    listener.subscribe(SETTINGS_CHANNEL, broken)
    listener.subscribe(SETTINGS_CHANNEL, got.put)
    listener.start()
    engine = open_store(pg_url)
    try:
        assert listener.wait_connected(10)
        for payload in ("1:a:2", "1:a:3"):
            with engine.begin() as conn:
                notify(conn, SETTINGS_CHANNEL, payload)
            assert got.get(timeout=5) == payload
    finally:
        listener.stop()
        engine.dispose()
    assert not listener.connected.is_set()


def test_sqlite_has_no_listener_and_notify_is_a_no_op(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    listener = NotifyListener(url).start()
    assert not listener.enabled and listener.wait_connected(0)
    engine = open_store(url)
    try:
        with engine.begin() as conn:
            notify(conn, SETTINGS_CHANNEL, "1:k:1")  # must not fail
    finally:
        engine.dispose()
    listener.stop()
    with pytest.raises(ValueError, match="not listening"):
        listener.subscribe("other", print)
