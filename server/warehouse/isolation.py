"""Finding the events to blame when a warehouse refuses a table's rows, and loading the rest.

A table is loaded in one transaction. When that fails with an error about the data
(data_errors.py: a value, a name, a constraint or trigger of the warehouse), retrying the same
rows can only fail again, and failing the sync would keep the cursor before those rows for
ever. So the rows are split in halves, each loaded in its own transaction, and a half that
fails is split again, down to single rows: every row that loads is loaded, and the rows that
fail on their own are the ones to blame (k bad rows among n cost about 2·k·log2(n) extra
loads; a table that refuses every row, 2·n). An error about the warehouse (connection lost,
lock, disk full) stops everything at once and fails the sync: then nothing is skipped and the
next sync retries the whole batch.

The loader's guarantees hold: each attempt is one transaction (committed or rolled back whole),
event tables insert ``ON CONFLICT (id) DO NOTHING`` and ``users``/``accounts`` upsert with
"newer wins", so loading the halves in any order gives the same rows as loading them at once.
"""

from __future__ import annotations

from typing import Callable

from server.warehouse.data_errors import is_data_error

Load = Callable[[list[int]], "tuple[int, dict[str, str]]"]


def load_isolating(
    load: Load, size: int, reread: Callable[[], None]
) -> tuple[int, dict[str, str], list[tuple[int, Exception]]]:
    """Load rows ``0 … size-1`` with ``load(indices)`` → (rows inserted, column types).

    Returns the rows inserted in all, the column types of the last successful load, and
    (index, error) for each row that the warehouse refused on its own. Raises an error that
    is not about the data as soon as it happens.
    """
    everything = list(range(size))
    try:
        count, types = load(everything)
        return count, types, []
    except Exception as exc:
        if not is_data_error(exc):
            raise
    reread()  # the first retry may simply succeed against the catalog as it is now
    total, types, refused = 0, {}, []
    pending = [everything]
    while pending:
        part = pending.pop()
        try:
            count, part_types = load(part)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(part) == 1:
                refused.append((part[0], exc))
            else:
                middle = len(part) // 2
                pending += [part[middle:], part[:middle]]  # the first half next: rows stay in order
            continue
        total += count
        types = part_types
    return total, types, sorted(refused, key=lambda item: item[0])
