"""Destination filters as the admin API, the web app and the CLI change them (docs/filters.md):
validated by ``rules.check_filters``, written by ``workspace.set_filters`` (a new settings
version: the bundle is rebuilt, cloud routing sees it), and recorded in the governance log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from server.api.service import MERGE_ATTEMPTS, busy_conflict
from server.catalog import Catalog
from server.errors import ApiError
from server.rules import FilterError, check_filters
from server.store import governance, workspace


def filter_error(exc: FilterError) -> ApiError:
    extra: dict[str, Any] = {"index": exc.index}
    if exc.position is not None:
        extra["position"] = exc.position
    where = f"filter {exc.index + 1}: " if exc.field != "filters" else ""
    at = f" (at character {exc.position})" if exc.position is not None else ""
    return ApiError(422, "invalid_filter", where + exc.message + at, field=f"filters[{exc.index}].{exc.field}",
                    extra=extra)


def _destination(engine: Engine, destination_id: int) -> dict[str, Any]:
    try:
        return workspace.get_destination(engine, destination_id)
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No destination {destination_id}") from None


def get_filters(engine: Engine, destination_id: int) -> list[dict[str, Any]]:
    return _destination(engine, destination_id)["filters"]


def set_filters(engine: Engine, catalog: Catalog, destination_id: int, filters: Any, actor: str,
                what: str = "replaced", expected: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Validate and store the whole ordered list; return it as stored. ``expected``: the list
    this one was made from; if the stored list differs now, ``workspace.Changed``."""
    current = _destination(engine, destination_id)
    try:
        cleaned = check_filters(filters)
    except FilterError as exc:
        raise filter_error(exc) from None
    manifest = catalog.get(current["slug"])
    try:
        dest = workspace.set_filters(engine, destination_id, cleaned, actor=actor,
                                     label=manifest.name if manifest else None, expected=expected)
    except workspace.NotFound:
        raise ApiError(404, "not_found", f"No destination {destination_id}") from None
    _record(engine, actor, f"filters.{what}", destination_id, {"filters": cleaned}, len(cleaned))
    return dest["filters"]


def add_filter(engine: Engine, catalog: Catalog, destination_id: int, item: Any, actor: str) -> list[dict[str, Any]]:
    """Append ``item`` to the list as it is when written: an append that another change
    overtook is made again on the new list, so that two filters added at once both stay."""
    for _ in range(MERGE_ATTEMPTS):
        existing = get_filters(engine, destination_id)
        try:
            check_filters([item])
        except FilterError as exc:
            exc.index = len(existing)
            raise filter_error(exc) from None
        try:
            return set_filters(engine, catalog, destination_id, [*existing, item], actor, "added", expected=existing)
        except workspace.Changed:
            continue
    raise busy_conflict(destination_id)


def delete_filter(engine: Engine, catalog: Catalog, destination_id: int, index: int | None,
                  actor: str, expected: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Remove the filter at ``index`` (0-based), or every filter when ``index`` is None. If the
    list changed after it was read (here, or as ``expected`` from the page the user saw), the
    index may name another filter by now: 409 ``conflict``, nothing deleted."""
    existing = get_filters(engine, destination_id)
    if index is None:
        return set_filters(engine, catalog, destination_id, [], actor, "deleted")
    if expected is not None and existing != expected:
        raise _changed(destination_id)
    if not 0 <= index < len(existing):
        raise ApiError(404, "not_found", f"No filter {index} on destination {destination_id}")
    try:
        return set_filters(engine, catalog, destination_id, existing[:index] + existing[index + 1:], actor, "deleted",
                           expected=existing)
    except workspace.Changed:
        raise _changed(destination_id) from None


def _changed(destination_id: int) -> ApiError:
    return ApiError(409, "conflict", f"The filters of destination {destination_id} changed meanwhile; "
                                     "nothing was deleted: look at them again")


def _record(engine: Engine, actor: str, action: str, destination_id: int, details: dict, count: int) -> None:
    """The governance log (server/store/governance.py)."""
    governance.record(engine, actor=actor, action=action, subject=f"destination:{destination_id}",
                      details=details, counts={"filters": count})
