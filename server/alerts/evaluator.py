"""The alert evaluator: every ``SWITCHBOARD_ALERT_INTERVAL_S`` seconds, check each enabled rule.

One runs in every process that runs delivery workers, and any number may share one database:
a rule whose condition changed is moved by ``store.transition`` — a conditional UPDATE on the
rule's own row — and only the evaluator whose UPDATE matched records the history row and sends
the notification. So a rule fires once and resolves once, whichever worker sees it first. A
notification that fails is recorded as failed on that history row; it is not retried (the next
change of state notifies again). Nothing here may stop the loop: a failing pass is logged.

While no rule is switched on, the evaluator queries nothing between passes (an idle server's
background planes sleep, issue #20): it waits until a rule is created or changed in this
process (``store.rules_changed``) or, for a rule made by another process, ``IDLE_POLL_S``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.alerts import conditions, notify
from server.catalog import Catalog
from server.config import Config
from server.store import alerts as store

log = logging.getLogger("switchboard.alerts")
IDLE_POLL_S = 30.0  # with no enabled rule: how soon a rule created by another process is seen


class Evaluator:
    def __init__(self, engine: Engine, catalog: Catalog, config: Config, name: str | None = None):
        self.engine, self.catalog, self.config = engine, catalog, config
        self.name = name or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._watching = False  # did the last pass find an enabled rule?

    def start(self) -> "Evaluator":
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        wake = self._wake

        def ring() -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(wake.set)

        self._ring = ring
        store.rules_changed.append(self._ring)
        self._task = loop.create_task(self._loop(), name="alert-evaluator")
        return self

    async def stop(self) -> None:
        if self._wake is not None and self._ring in store.rules_changed:
            store.rules_changed.remove(self._ring)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert evaluation failed")
            await self._sleep()

    async def _sleep(self) -> None:
        assert self._wake is not None
        self._wake.clear()
        timeout = self.config.alert_interval_s if self._watching else max(IDLE_POLL_S, self.config.alert_interval_s)
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def run_once(self) -> list[int]:
        """One pass over the enabled rules; the history ids of the transitions this evaluator made."""
        transitions = await run_in_threadpool(self._evaluate)
        for rule, event in transitions:
            error = await notify.send(self.engine, self.catalog, self.config, rule, event)
            if error:
                log.warning("alert %s: notification failed: %s", rule["id"], error)
            await run_in_threadpool(store.record_notification, self.engine, event["properties"]["history_id"], error)
        return [event["properties"]["history_id"] for _, event in transitions]

    def _evaluate(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        made: list[tuple[dict[str, Any], dict[str, Any]]] = []
        rules = store.list_rules(self.engine, enabled_only=True)
        self._watching = bool(rules)
        labels = conditions.names(self.engine) if rules else {}
        for rule in rules:
            try:
                breached, value, text = conditions.check(self.engine, rule, store.utcnow(), labels)
                wanted = store.FIRING if breached else store.OK
                if wanted == rule["state"]:
                    store.record_value(self.engine, rule["id"], value)
                    continue
                said = text if breached else f"resolved: {text}"
                history_id = store.transition(self.engine, rule["id"], wanted, value, said, self.name)
                if history_id is not None:
                    state = "firing" if breached else "resolved"
                    made.append((rule, notify.alert_event(rule, state, text, value, history_id)))
            except Exception:
                log.exception("alert rule %s could not be evaluated", rule["id"])
        return made
