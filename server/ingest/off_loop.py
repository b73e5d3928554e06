"""One thread beside the event loop for the collector's large bodies: gunzip and JSON parsing.

Decompressing and parsing a body is synchronous work proportional to its size after gzip, which
a client chooses: 4 KB of gzip can be 4 MB of JSON, whose parse alone can take a quarter of a
second when it is all tiny containers. On the event loop that time is every other client's
wait, and worse, the loop runs the handlers that are ready one after another before it reads a
socket again: with 8 such bodies in flight an ordinary ``/v1/t`` waited 14 s. Here the loop only
awaits a future, so between two pieces of this work it reads sockets and serves everybody else.

One thread, one body at a time, in arrival order: parsing holds the GIL (orjson builds Python
objects), so a second thread would not parse faster, only take more turns from the loop. Small
bodies — every single event, a batch of 100 analytics.js events (~60 KB) — stay on the loop:
the hand-over to a thread costs more than their parse (``server/ingest/body.py``: INLINE_LIMIT).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class OffLoop:
    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collector-bodies")
        # The loop hands the thread its next body only after the last one's answer: between two,
        # it has a turn of its own (sockets read, other requests served). Queued in the executor
        # instead, the thread would go straight from one parse to the next, and the loop would
        # wait for the GIL through several of them.
        self._turn = asyncio.Lock()
        self._closed = False

    async def run(self, work: Callable[..., T], *args) -> T:
        """``work(*args)`` on the thread; its exception (an ApiError: a 400) is raised here."""
        if self._closed:  # a request still in flight while the app shuts down: no thread to ask
            return work(*args)
        async with self._turn:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def close(self) -> None:
        self._closed = True
        self._thread.shutdown(wait=False, cancel_futures=True)
