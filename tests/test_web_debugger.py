"""The debugger's event stream (server/web/views_debugger.py), read straight from its generator.

A browser-level test (e2e) shows events appearing live; this one pins the part a browser cannot
provoke on purpose: with several collector processes on PostgreSQL, an event can commit (and
become visible) after one with a higher id was already streamed. The stream re-reads a short
window behind its position, so such an event still appears, once, and nothing is sent twice.
Rows are written with explicit ids to stage that order on either database.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

import orjson
import pytest

from server.store import events, workspace
from server.web import views_debugger

pytestmark = pytest.mark.timeout(60)


def _commit(engine, source_id: int, event_id: int) -> None:
    """One committed event with the given id (as another process's late commit would look)."""
    payload = {"type": "track", "event": f"E{event_id}", "userId": "u", "messageId": f"m-{event_id}"}
    with engine.begin() as conn:
        conn.execute(events.events.insert().values(
            id=event_id, source_id=source_id, message_id=f"m-{event_id}", type="track",
            received_at=datetime.now(timezone.utc), payload=orjson.dumps(payload).decode(),
        ))


class Reader:
    """Reads the stream in its own task (cancelling a read would end the generator) and hands
    out the ids of the SSE event messages, keep-alives skipped."""

    def __init__(self, stream):
        self.stream = stream
        self.ids: asyncio.Queue[int] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for chunk in self.stream:
            if chunk.startswith(b"id: "):
                self.ids.put_nowait(orjson.loads(chunk.split(b"data: ", 1)[1])["id"])

    async def next(self, want: int, timeout: float = 5.0) -> list[int]:
        return [await asyncio.wait_for(self.ids.get(), timeout) for _ in range(want)]

    async def quiet(self, seconds: float) -> list[int]:
        """Ids streamed within ``seconds`` (expected: none)."""
        await asyncio.sleep(seconds)
        return [self.ids.get_nowait() for _ in range(self.ids.qsize())]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.aclose()


def test_an_event_committed_late_with_a_lower_id_still_appears_once(engine):
    source = workspace.create_source(engine, "Site")
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine)))

    async def scenario():
        reader = Reader(views_debugger._stream(request, source["id"], 0))
        try:
            _commit(engine, source["id"], 10)
            _commit(engine, source["id"], 12)
            assert await reader.next(2) == [10, 12]
            _commit(engine, source["id"], 11)  # committed after 12 was shown
            assert await reader.next(1) == [11]
            # Nothing is sent again while the window keeps re-reading 10–12.
            assert await reader.quiet(views_debugger.POLL_SECONDS * 3) == []
            _commit(engine, source["id"], 13)
            assert await reader.next(1) == [13]
        finally:
            await reader.close()

    asyncio.run(scenario())


def test_the_stream_shows_only_its_own_sources_events_after_its_position(engine):
    site, other = workspace.create_source(engine, "Site"), workspace.create_source(engine, "Other")
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(engine=engine)))
    _commit(engine, site["id"], 1)  # before the position the browser resumes from

    async def scenario():
        reader = Reader(views_debugger._stream(request, site["id"], 1))
        try:
            _commit(engine, other["id"], 2)
            _commit(engine, site["id"], 3)
            assert await reader.next(1) == [3]
            assert await reader.quiet(views_debugger.POLL_SECONDS * 2) == []
        finally:
            await reader.close()

    asyncio.run(scenario())


def test_an_open_stream_does_not_hold_back_a_server_that_is_stopping(tmp_path):
    """SIGTERM to ``switchboard serve`` with a debugger tab open: the stream ends at once and the
    server exits, instead of uvicorn waiting out the stream's STREAM_SECONDS (15 s) first."""
    import re
    import signal
    import time

    import httpx

    from edge_live import admin_server
    from server.store import open_store

    server = admin_server(tmp_path, "debugger-stop-password-1")
    try:
        engine = open_store(server.env["SWITCHBOARD_DATABASE_URL"])
        source = workspace.create_source(engine, "Site")
        engine.dispose()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
            assert client.post("/sign-in", data={"csrf_token": token, "username": "admin",
                                                 "password": "debugger-stop-password-1"}).status_code in (200, 303)
            with client.stream("GET", f"/sources/{source['id']}/debugger/stream") as stream:
                assert stream.status_code == 200
                chunks = stream.iter_bytes()
                assert next(chunks).startswith(b"retry:")  # the stream is open
                started = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                for _ in chunks:  # read until the server ends the stream
                    pass
                server.process.wait(views_debugger.STREAM_SECONDS - 5)
                stopped = time.monotonic() - started
        # uvicorn re-raises the SIGTERM it handled once it has shut down.
        assert server.process.returncode in (0, -signal.SIGTERM), server.output()
        assert stopped < views_debugger.STREAM_SECONDS - 5, stopped
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
