"""What a sync tells its history: notices (each once, at most ``MAX_NOTICES``) and the events
it skipped, every one named with its messageId, its id in the log, the table and the error."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from server.store.warehouse_skipped import Skipped

log = logging.getLogger("switchboard.warehouse")

MAX_NOTICES = 100


class SyncReport:
    def __init__(self, destination_id: int, redact: Callable[[str], str]):
        self.destination_id = destination_id
        self.redact = redact  # the warehouse's secrets never reach the history
        self.notices: dict[str, None] = {}
        self.skipped_events: set[int] = set()

    def notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices[message] = None
            log.info("warehouse %s: %s", self.destination_id, message)

    def skip(self, refused: list[Skipped]) -> list[Skipped]:
        """Report events the warehouse refused; return them as they are to be recorded."""
        refused = [replace(s, error=self.redact(s.error)) for s in refused]
        for s in refused:
            where = f" in {s.table}" if s.table else ""
            self.notice(f"skipped event {s.message_id or '(no messageId)'} (#{s.event_id}){where}: {s.error}")
            self.skipped_events.add(s.event_id)
        if refused:
            log.warning("warehouse %s: skipped %d event(s) the warehouse refused", self.destination_id,
                        len({s.event_id for s in refused}))
        return refused

    def shown_notices(self) -> list[str]:
        shown = list(self.notices)
        n = len(self.skipped_events)
        if n:  # first, so that the cap on notices never hides it
            shown.insert(0, f"{n} event{'s' if n != 1 else ''} skipped: the warehouse refused "
                            f"{'them' if n != 1 else 'it'} (see the skipped events; re-load them once the cause is fixed)")
        return shown[:MAX_NOTICES]
