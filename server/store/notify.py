"""The one change bus: ``SETTINGS``, ``EVENTS``, ``SUPPRESSIONS`` (regulations: the
suppression list changed) and ``JOBS`` (delivery jobs became claimable), the same in one
process and across processes.

A writer publishes inside its transaction (``SETTINGS.publish(conn, source_id, write_key,
version)``; ``EVENTS.publish(conn, max_event_id)``); subscribers (``SETTINGS.subscribe(cb)``) are
called in this process right after the commit (``deliver_committed``) and, on PostgreSQL, in
every other process through ``LISTEN/NOTIFY`` (``listen(engine)``). Settings → bundle cache and
write-key cache, events → delivery workers and the debugger all take this one path.

Cross-process announcements over PostgreSQL ``LISTEN/NOTIFY``:

Several ``switchboard serve`` and ``switchboard worker`` processes share one PostgreSQL. A
process that changes settings or appends events says so with ``pg_notify`` inside the same
transaction, so PostgreSQL delivers the notification only if (and right after) it commits.
Every process runs one ``NotifyListener``: a background thread with its own autocommit psycopg
connection that LISTENs on our channels and hands each payload to in-process callbacks.

Notifications are a latency optimisation, never the only path: they are lost while a listener
is disconnected. So the listener reconnects with backoff and, after every reconnection, calls
its ``on_reconnect`` callbacks, which resynchronise from the database (the version check).

On SQLite there is nothing to listen to: ``start`` does nothing and ``notify`` is a no-op;
``listen`` runs a bell (``server/store/bell.py``) instead, which carries ``EVENTS``,
``SUPPRESSIONS``, ``JOBS`` and ``SETTINGS`` (as "some source changed": every source is
announced at its current version) between the processes on one SQLite file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Callable

from sqlalchemy import Connection, Engine, event, select
from sqlalchemy.engine import URL, make_url

from server.store import bell
from server.store.engine import read_only
from server.store.schema import sources

log = logging.getLogger("switchboard.notify")

SETTINGS_CHANNEL = "switchboard_settings"  # payload "source_id:write_key:version"
EVENTS_CHANNEL = "switchboard_events"  # payload: free text (the collector sends the source id)
SUPPRESSIONS_CHANNEL = "switchboard_suppressions"  # payload: the suppression list's version
JOBS_CHANNEL = "switchboard_jobs"  # payload: a destination id (0: any) whose jobs became claimable
CHANNELS = (SETTINGS_CHANNEL, EVENTS_CHANNEL, SUPPRESSIONS_CHANNEL, JOBS_CHANNEL)

Callback = Callable[[str], None]
_PENDING = "switchboard_changes"  # conn.info key: what a transaction published, delivered after commit
CONNECT_WAIT_S = 5.0


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    """Queue a notification on ``conn``'s transaction (sent at commit); no-op on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_notify(%(c)s, %(p)s)", {"c": channel, "p": payload})


def libpq_url(url: str | URL) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy) → ``postgresql://…`` (libpq), password kept."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class NotifyListener:
    """One thread, one connection, many callbacks. Thread-safe subscribe; start/stop once."""

    # Why these numbers: a notification wait wakes at least every POLL_S to notice stop();
    # an idle connection is pinged every PING_S so a silently dead socket is found and replaced.
    POLL_S = 0.25
    PING_S = 15.0
    MAX_BACKOFF_S = 5.0

    def __init__(self, url: str | URL, channels: tuple[str, ...] = CHANNELS):
        parsed = make_url(url)
        self.enabled = parsed.get_backend_name() == "postgresql"
        self._url = libpq_url(parsed) if self.enabled else ""
        self.channels = tuple(channels)
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_pids: set[int] = set()
        self._engine_hooks: list = []
        self.connected = threading.Event()
        self.connections = 0  # successful connects so far (1 = never reconnected)
        self.bell: bell.Bell | None = None  # SQLite's stand-in for NOTIFY (server/store/bell.py)

    @classmethod
    def for_engine(cls, engine: Engine, channels: tuple[str, ...] = CHANNELS) -> "NotifyListener":
        """A listener on ``engine``'s database that skips what this process's own pool sent."""
        listener = cls(engine.url, channels)
        if listener.enabled:
            listener.ignore_own(engine)
        return listener

    def ignore_own(self, engine: Engine) -> None:
        """Skip notifications sent through ``engine``'s connections: this process has already
        told its own callbacks, right after its commit (workspace and events do that), and
        would otherwise hear of its own change twice.

        PostgreSQL tags each notification with the sending backend's pid. We track the pids of
        the pool's open connections (a pid is unique among live backends, so a foreign
        notification is never skipped) and recycle the pool once so that none is unknown."""
        def opened(dbapi_connection, _record) -> None:
            self._own_pids.add(dbapi_connection.info.backend_pid)

        def closed(dbapi_connection, _record=None) -> None:
            self._own_pids.discard(dbapi_connection.info.backend_pid)

        self._engine_hooks = [(engine, "connect", opened), (engine, "close", closed), (engine, "close_detached", closed)]
        for hook in self._engine_hooks:
            event.listen(*hook)
        engine.dispose()  # connections opened before now would go untracked

    # ---------------------------------------------------------------- subscriptions

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(payload)`` (on the listener thread) for each notification on ``channel``."""
        if channel not in self.channels:
            raise ValueError(f"not listening on {channel!r}; channels: {', '.join(self.channels)}")
        with self._lock:
            self._callbacks[channel].append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks[channel]:
                    self._callbacks[channel].remove(callback)

        return unsubscribe

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each reconnection: notifications may have been missed."""
        with self._lock:
            self._reconnect_callbacks.append(callback)

    # ---------------------------------------------------------------- life cycle

    def start(self) -> "NotifyListener":
        if not self.enabled or self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="switchboard-notify", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """True once LISTEN is in place (always True on SQLite, where nothing is listened to)."""
        return True if not self.enabled else self.connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.bell is not None:
            self.bell.stop()
            self.bell = None
        self._stop.set()
        for hook in self._engine_hooks:
            event.remove(*hook)
        self._engine_hooks = []
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # ---------------------------------------------------------------- the thread

    def _run(self) -> None:
        import psycopg

        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, application_name="switchboard-notify") as conn:
                    for channel in self.channels:
                        conn.execute(f'LISTEN "{channel}"')
                    self.connections += 1
                    self.connected.set()
                    backoff = 0.1
                    if self.connections > 1:
                        log.info("notification listener reconnected")
                        self._fire_reconnect()
                    self._listen(conn)
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    break
                log.warning("notification listener lost its connection (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF_S)
        self.connected.clear()

    def _listen(self, conn) -> None:
        last_traffic = time.monotonic()
        while not self._stop.is_set():
            got = False
            for note in conn.notifies(timeout=self.POLL_S):
                got = True
                if note.pid not in self._own_pids:
                    self._dispatch(note.channel, note.payload)
                if self._stop.is_set():
                    return
            now = time.monotonic()
            if got:
                last_traffic = now
            elif now - last_traffic > self.PING_S:
                conn.execute("SELECT 1")  # raises on a dead connection → reconnect
                last_traffic = now

    def _dispatch(self, channel: str, payload: str) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(channel, ()))
        for callback in callbacks:
            try:
                callback(payload)
            except Exception:  # one broken subscriber must not silence the others
                log.exception("notification callback for %s failed", channel)

    def _fire_reconnect(self) -> None:
        with self._lock:
            callbacks = list(self._reconnect_callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("reconnect callback failed")


# ---------------------------------------------------------------- the bus


class Topic:
    """One kind of change, with its channel and its payload's text form."""

    def __init__(self, channel: str, encode: Callable[..., str], decode: Callable[[str], tuple | None]):
        self.channel = channel
        self.encode = encode
        self.decode = decode
        self._subscribers: list[Callable[..., None]] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callable[..., None]) -> Callable[[], None]:
        """Call ``callback(*change)`` for every change, this process's and (on PostgreSQL) every
        other process's; returns the unsubscribe function. Called from the committing thread or
        the listener thread: keep it short (set an event, ``loop.call_soon_threadsafe``)."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, conn: Connection, *change) -> None:
        """Announce ``change`` when ``conn``'s transaction commits (NOTIFY is transactional; the
        local delivery waits for ``deliver_committed``)."""
        notify(conn, self.channel, self.encode(*change))
        conn.info.setdefault(_PENDING, []).append((self, change))

    def deliver(self, *change) -> None:
        """Tell this process's subscribers (the change is committed)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            # A failing subscriber must neither hide the change from the others nor turn the
            # writer's success into an error.
            try:
                callback(*change)
            except Exception:
                log.exception("%s subscriber %r failed on %s", self.channel, callback, change)

    def committed(self, *change) -> None:
        """This process committed ``change``: tell its subscribers and, on SQLite, ring the bell
        for the other processes on the file (on PostgreSQL the transaction's NOTIFY did)."""
        self.deliver(*change)
        bell.ring(self.channel)

    def receive(self, payload: str) -> None:
        """Another process's NOTIFY: decode and deliver (a malformed payload is logged, skipped)."""
        change = self.decode(payload)
        if change is None:
            log.warning("ignoring malformed %s payload %r", self.channel, payload)
            return
        self.deliver(*change)


def take_published(conn: Connection) -> list:
    """What ``conn``'s transaction published; take it before the connection goes back to the pool
    (``conn.info`` lives as long as the pooled connection)."""
    return conn.info.pop(_PENDING, [])


def deliver_committed(published: list) -> None:
    for topic, change in published:
        topic.committed(*change)


def parse_settings_payload(payload: str) -> tuple[int, str, int] | None:
    """'source_id:write_key:version' → (source_id, write_key, version); None if malformed.

    Split from both ends, so a write key is never cut even if it ever held a colon."""
    head, sep, rest = payload.partition(":")
    key, sep2, version = rest.rpartition(":")
    try:
        return (int(head), key, int(version)) if sep and sep2 and key else None
    except ValueError:
        return None


def _parse_max_id(payload: str) -> tuple[int]:
    # Anything but a number (e.g. "" after a reconnection) is 0: "there may be new events: read the log".
    try:
        return (int(payload),)
    except ValueError:
        return (0,)


# (source_id, write_key, settings_version); version -1: the write key no longer serves.
SETTINGS = Topic(SETTINGS_CHANNEL, lambda source_id, write_key, version: f"{source_id}:{write_key}:{version}",
                 parse_settings_payload)
# (max_event_id,): the highest events.id in the log after a committed append; 0 = unknown.
EVENTS = Topic(EVENTS_CHANNEL, lambda max_id: str(max_id), _parse_max_id)
# (version,): the suppression list (server/store/regulations.py) changed; 0 = unknown, re-read it.
SUPPRESSIONS = Topic(SUPPRESSIONS_CHANNEL, lambda version: str(version), _parse_max_id)
# (destination_id,): jobs were queued or released other than by the fan-out (a replay, a graceful
# stop's released leases): the delivery workers, which sleep while idle, look for due jobs. 0 = any.
JOBS = Topic(JOBS_CHANNEL, lambda destination_id: str(destination_id), _parse_max_id)


def _announce_settings(engine: Engine) -> None:
    with read_only(engine) as conn:
        rows = conn.execute(select(sources.c.id, sources.c.write_key, sources.c.settings_version)).all()
    for row in rows:
        SETTINGS.deliver(row.id, row.write_key, row.settings_version)


def resync(engine: Engine) -> None:
    """After a reconnection, notifications may have been missed: announce every source at its
    current version (subscribers keep what has not changed) and wake the event readers."""
    _announce_settings(engine)
    EVENTS.deliver(0)
    SUPPRESSIONS.deliver(0)
    JOBS.deliver(0)


def listen(engine: Engine) -> NotifyListener:
    """Start relaying other processes' changes to this process's subscribers (PostgreSQL; on
    SQLite the listener is disabled and does nothing). Stop it with ``listener.stop()``."""
    listener = NotifyListener.for_engine(engine)
    if listener.enabled:
        for topic in (SETTINGS, EVENTS, SUPPRESSIONS, JOBS):
            listener.subscribe(topic.channel, topic.receive)
        listener.on_reconnect(lambda: resync(engine))
        listener.start()
    elif (database := bell.database_file(engine)) is not None:
        # Payload-less rings. A settings ring says only "some source changed": announce every
        # source at its current version (one read, only when another process changed settings;
        # subscribers keep what has not changed), as after a PostgreSQL reconnection.
        topics = {topic.channel: topic for topic in (EVENTS, SUPPRESSIONS, JOBS)}

        def rang(channel: str) -> None:
            if channel == SETTINGS_CHANNEL:
                _announce_settings(engine)
            else:
                topics[channel].receive("")

        listener.bell = bell.Bell(database, (*topics, SETTINGS_CHANNEL), rang).start()
    return listener
