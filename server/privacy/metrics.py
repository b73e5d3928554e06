"""``/metrics`` families of the privacy plane, read from the store at scrape time: the store's
size and row counts, and events acknowledged but not stored because their user is suppressed.

Counting rows is not free on a large log, so the figures are cached for ``CACHE_S``."""

from __future__ import annotations

import threading
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from server.store import disk, regulations

CACHE_S = 30.0


class PrivacyCollector:
    def __init__(self, engine):
        self.engine = engine
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._usage: dict = {}

    def _read_usage(self) -> dict:
        with self._lock:
            if time.monotonic() - self._at > CACHE_S:
                self._usage = disk.usage(self.engine)
                self._at = time.monotonic()
            return self._usage

    def collect(self):
        usage = self._read_usage()
        size = GaugeMetricFamily("switchboard_store_bytes", "Size of the store on disk (SQLite file + WAL, or "
                                 "pg_database_size)")
        size.add_metric([], usage["bytes"])
        rows = GaugeMetricFamily("switchboard_store_rows", "Rows in the store's largest tables", labels=["table"])
        for table, count in sorted(usage["rows"].items()):
            rows.add_metric([table], count)
        suppressed = CounterMetricFamily(
            "switchboard_suppressed_events", "Events acknowledged but not stored: their userId is suppressed",
            labels=["source_id"])
        for source_id, count in sorted(regulations.suppressed_counts(self.engine).items()):
            suppressed.add_metric([str(source_id)], count)
        return [size, rows, suppressed]
