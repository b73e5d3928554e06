"""Re-loading the events a warehouse refused, once their cause is fixed.

The skipped list (server/store/warehouse_skipped.py) names each refused event by its id in the
log. A sync asked to re-load them (``switchboard warehouse sync ID --reload-skipped``,
``POST /api/v1/destinations/{id}/skipped/reload``, the web app's button) reads those events
back from the log, ``batch_rows`` at a time, and loads them the usual way, isolation included:
the ones that load leave the list, the ones still refused stay with the new error. Their rows
in tables that had taken them before are dropped by ``ON CONFLICT (id)`` (``users`` and
``accounts`` take the older call as "fill the gaps" only), so a re-load never doubles a row.
Events no longer in the log (pruned by retention, erased by a delete regulation) leave the list.
"""

from __future__ import annotations

from typing import Callable, Iterable

from sqlalchemy import Engine

from server.store import warehouse as store
from server.store import warehouse_skipped
from server.store.warehouse_skipped import Skipped
from server.warehouse.batch import load_tables, rows_by_table

Notice = Callable[[str], None]
Skip = Callable[[list[Skipped]], list[Skipped]]


def reload_skipped(engine: Engine, target, destination_id: int, source_id: int, names: Iterable[str],
                   batch_rows: int, column_limit: int, sync_id: int, notice: Notice,
                   skip: Skip) -> dict[str, int]:
    """Load the destination's skipped events again; return the rows inserted per table.

    ``skip`` reports and returns the events refused again (as the sync reports every skip).
    """
    totals: dict[str, int] = {}
    loaded = refused_again = gone = 0
    after = 0
    while True:
        ids = warehouse_skipped.event_ids(engine, destination_id, after=after, limit=batch_rows)
        if not ids:
            break
        after = ids[-1]
        logged = warehouse_skipped.read_events(engine, source_id, ids)
        gone += len(ids) - len(logged)
        batch = rows_by_table(logged, names, notice)
        counts, columns, refused = load_tables(target, batch, column_limit, notice)
        again = skip(batch.skipped + refused)
        store.record_columns(engine, destination_id, columns)
        warehouse_skipped.replace(engine, destination_id, ids, sync_id, again)
        for table, n in counts.items():
            totals[table] = totals.get(table, 0) + n
        still = {s.event_id for s in again}
        refused_again += len(still)
        loaded += len(logged) - len(still)
    notice(f"re-loaded skipped events: {loaded} loaded, {refused_again} refused again"
           + (f", {gone} no longer in the event log (forgotten)" if gone else ""))
    return totals
