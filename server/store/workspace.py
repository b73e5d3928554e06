"""Queries over sources, their destinations and the settings history.

Every change to a source or one of its destinations runs in one transaction that also bumps
``sources.settings_version`` and writes the new snapshot to ``settings_versions``. Readers that
only need the current configuration (bundle misses) read that snapshot by write key in one
indexed query: ``public_config``.

Plain dicts go in and out; validation against the manifests is the caller's job (the store
imports nothing from the planes).
"""

from __future__ import annotations

import logging
import re
import secrets
import string
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from server.store import alerts as alert_rules
from server.store import audit, notify
from server.store.bundle_builds import bump_sequence
from server.catalog import SECRET_MASK
from server.store.engine import read_only
from server.store.schema import destinations, settings_versions, sources

log = logging.getLogger("switchboard.store")

_SLUG_LOCK_ID = 0x5B0A_0003  # PostgreSQL advisory lock key (migrations use 0x5B0A_0001)


class NotFound(LookupError):
    """No row with that id."""


class Changed(RuntimeError):
    """The row changed between the caller's read and its write (``expected``): the caller reads
    again and merges its change into what is there now, so that no concurrent edit is lost."""


def now() -> datetime:
    return datetime.now(timezone.utc)


_KEY_ALPHABET = string.ascii_letters + string.digits


def new_write_key() -> str:
    # 190 random bits in letters and digits, like Segment's keys: it appears in script URLs and
    # on command lines, where a key starting with '-' (token_urlsafe's alphabet) read as an option.
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


def slugify(name: str) -> str:
    # At most 180 characters: _unique_slug may append "_<n>" and the column holds 200.
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower())[:180].strip("_")
    return slug or "source"


def _row(row) -> dict[str, Any]:
    return dict(row._mapping)


def _source_dict(row) -> dict[str, Any]:
    data = _row(row)
    data["enabled"] = bool(data["enabled"])
    data["server_cookies"] = bool(data.get("server_cookies"))
    return data


def _destination_dict(row) -> dict[str, Any]:
    data = _row(row)
    data["enabled"] = bool(data["enabled"])
    data["settings"] = dict(data["settings"] or {})
    data["filters"] = list(data.get("filters") or [])
    return data


# ---------------------------------------------------------------- snapshots and versions


def _snapshot(conn: Connection, source_id: int) -> dict[str, Any]:
    source = conn.execute(select(sources).where(sources.c.id == source_id)).one()
    rows = conn.execute(
        select(destinations).where(destinations.c.source_id == source_id).order_by(destinations.c.id)
    ).all()
    head = {"name": source.name, "enabled": bool(source.enabled)}
    if source.library_name:  # only when set: older snapshots (and most sources) have no such key
        head["library_name"] = source.library_name
    if source.server_cookies:  # the same
        head["server_cookies"] = True
    return {
        "source": head,
        "destinations": [
            {
                "id": r.id,
                "slug": r.slug,
                "mode": r.mode,
                "enabled": bool(r.enabled),
                "settings": dict(r.settings or {}),
                # only when there are some: snapshots of destinations without filters stay as they were
                **({"filters": list(r.filters)} if r.filters else {}),
            }
            for r in rows
        ],
    }


def _bump(conn: Connection, source_id: int, actor: str, summary: str, *, action: str, subject: str = "",
          changes: dict[str, Any] | None = None) -> int:
    """Record the source's current state as a new version; return that version number.

    Also the audit hook of every workspace change: the entry (``action`` on ``subject``, by
    default the source) holds the fields that differ from the previous version, secrets masked.
    ``changes`` replaces that diff; an empty ``action`` records no entry (filters: governance does)."""
    current = conn.execute(
        select(sources.c.settings_version, sources.c.write_key).where(sources.c.id == source_id)
    ).one()
    previous = conn.execute(select(settings_versions.c.content).where(
        settings_versions.c.source_id == source_id, settings_versions.c.version == current.settings_version)
    ).scalar_one_or_none()
    version = current.settings_version + 1
    conn.execute(
        sources.update().where(sources.c.id == source_id).values(settings_version=version, updated_at=now())
    )
    conn.execute(
        settings_versions.insert().values(
            source_id=source_id,
            version=version,
            created_at=now(),
            actor=actor,
            summary=summary,
            content=(content := _snapshot(conn, source_id)),
        )
    )
    if action:
        subject = subject or f"source:{source_id}"
        if changes is None:
            changes = audit_diff(previous or {}, content, subject)
        audit.record(conn, actor=actor, action=action, subject=subject, changes={"summary": summary, **changes})
    # Every change, here and in other processes, reaches the bundle and write-key caches this way.
    notify.SETTINGS.publish(conn, source_id, current.write_key, version)
    bump_sequence(conn)  # other processes' bundle caches look at this one number
    return version


def _flatten(content: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """A snapshot as {field path: (value, value as the audit may show it)}: "source.name",
    "destination:4.settings.apiKey" (masked unless public), …"""
    fields = {f"source.{k}": (v, v) for k, v in (content.get("source") or {}).items()}
    for d in content.get("destinations") or []:
        prefix = f"destination:{d['id']}"
        for key in ("slug", "mode", "enabled"):
            fields[f"{prefix}.{key}"] = (d.get(key), d.get(key))
        for key, value in (d.get("settings") or {}).items():
            fields[f"{prefix}.settings.{key}"] = (value, audit.mask_setting(d["slug"], key, value))
        if d.get("filters"):
            fields[f"{prefix}.filters"] = (d["filters"], d["filters"])
    return fields


def audit_diff(before: dict[str, Any], after: dict[str, Any], subject: str) -> dict[str, Any]:
    """{field: {"before", "after"}} for the fields two snapshots differ in, secrets masked (a
    secret that changed shows the mask on both sides). The subject's own fields lose its prefix."""
    old, new = _flatten(before), _flatten(after)
    own = "source." if subject.startswith("source:") else f"{subject}."
    gone = (None, None)
    return {
        path.removeprefix(own): {"before": old.get(path, gone)[1], "after": new.get(path, gone)[1]}
        for path in sorted(set(old) | set(new))
        if old.get(path, gone)[0] != new.get(path, gone)[0]
    }


def _forget_key(conn: Connection, source_id: int, write_key: str) -> None:
    """Announce that ``write_key`` no longer serves (version -1), here and to other processes."""
    notify.SETTINGS.publish(conn, source_id, write_key, -1)
    bump_sequence(conn)


class _Tx:
    """``with _Tx(engine) as conn``: a write transaction whose published changes reach this
    process's subscribers after commit (server/store/notify.py)."""

    def __init__(self, engine: Engine):
        self._cm = engine.begin()

    def __enter__(self) -> Connection:
        self.conn = self._cm.__enter__()
        return self.conn

    def __exit__(self, *exc):
        published = notify.take_published(self.conn)
        result = self._cm.__exit__(*exc)
        if exc[0] is None:
            notify.deliver_committed(published)
        return result


# ---------------------------------------------------------------- sources


def create_source(engine: Engine, name: str, *, actor: str = "system") -> dict[str, Any]:
    with _Tx(engine) as conn:
        source_id = conn.execute(
            sources.insert().values(
                name=name,
                slug=_unique_slug(conn, slugify(name)),
                write_key=new_write_key(),
                enabled=True,
                settings_version=0,
                created_at=now(),
                updated_at=now(),
            )
        ).inserted_primary_key[0]
        _bump(conn, source_id, actor, f"Created source {name!r}", action="source.create")
        return _source_dict(conn.execute(select(sources).where(sources.c.id == source_id)).one())


def _unique_slug(conn: Connection, base: str) -> str:
    if conn.dialect.name == "postgresql":
        # Serialise slug choice across processes until commit: two servers creating "Shop" at
        # once would otherwise both pick "shop" (it names the source's warehouse schema).
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _SLUG_LOCK_ID})
    taken = set(conn.execute(select(sources.c.slug).where(sources.c.slug.like(f"{base}%"))).scalars())
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}_{n}", n + 1
    return slug


def list_sources(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine) as conn:
        return [_source_dict(r) for r in conn.execute(select(sources).order_by(sources.c.id))]


def get_source(engine: Engine, source_id: int) -> dict[str, Any]:
    with read_only(engine) as conn:
        row = conn.execute(select(sources).where(sources.c.id == source_id)).one_or_none()
    if row is None:
        raise NotFound(f"source {source_id}")
    return _source_dict(row)


def source_by_write_key(engine: Engine, write_key: str) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(select(sources).where(sources.c.write_key == write_key)).one_or_none()
    return None if row is None else _source_dict(row)


_KEEP: Any = object()


def update_source(
    engine: Engine, source_id: int, *, name: str | None = None, enabled: bool | None = None,
    library_name: str | None = _KEEP, server_cookies: bool | None = None, actor: str = "system",
) -> dict[str, Any]:
    """``library_name``: a name checked by server.library_name.clean, or None for the default;
    left out, it stays as it is. ``server_cookies``: whether the bundle has the collector set the
    visitor's id cookies (None: unchanged)."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = name
    if enabled is not None:
        values["enabled"] = enabled
    if library_name is not _KEEP:
        values["library_name"] = library_name
    if server_cookies is not None:
        values["server_cookies"] = server_cookies
    with _Tx(engine) as conn:
        before = conn.execute(select(sources).where(sources.c.id == source_id)).one_or_none()
        if before is None:
            raise NotFound(f"source {source_id}")
        changes = []
        if name is not None and name != before.name:
            changes.append(f"renamed to {name!r}")
        if enabled is not None and enabled != bool(before.enabled):
            changes.append("enabled" if enabled else "disabled")
        if library_name is not _KEEP and library_name != before.library_name:
            changes.append(f"library name {library_name or 'switchboard.js'!r}")
        if server_cookies is not None and server_cookies != bool(before.server_cookies):
            changes.append("server-set cookies " + ("on" if server_cookies else "off"))
        # Saving unchanged is not a new version (it would only invalidate every cached bundle).
        if changes:
            conn.execute(sources.update().where(sources.c.id == source_id).values(**values))
            _bump(conn, source_id, actor, "Source " + ", ".join(changes), action="source.update")
        return _source_dict(conn.execute(select(sources).where(sources.c.id == source_id)).one())


def rotate_write_key(engine: Engine, source_id: int, *, actor: str = "system") -> dict[str, Any]:
    with _Tx(engine) as conn:
        old = conn.execute(select(sources.c.write_key).where(sources.c.id == source_id)).scalar_one_or_none()
        if old is None:
            raise NotFound(f"source {source_id}")
        conn.execute(sources.update().where(sources.c.id == source_id).values(write_key=new_write_key()))
        # The old key's cached bundle must go too: announce it explicitly.
        _forget_key(conn, source_id, old)
        _bump(conn, source_id, actor, "Rotated the write key", action="source.rotate_write_key",
              changes={"write_key": {"before": SECRET_MASK, "after": SECRET_MASK}})
        return _source_dict(conn.execute(select(sources).where(sources.c.id == source_id)).one())


def delete_source(engine: Engine, source_id: int, *, actor: str = "system") -> None:
    with _Tx(engine) as conn:
        row = conn.execute(select(sources.c.write_key, sources.c.name).where(sources.c.id == source_id)).one_or_none()
        if row is None:
            raise NotFound(f"source {source_id}")
        dest_ids = list(conn.execute(select(destinations.c.id).where(destinations.c.source_id == source_id)).scalars())
        conn.execute(sources.delete().where(sources.c.id == source_id))
        _forget_key(conn, source_id, row.write_key)
        audit.record(conn, actor=actor, action="source.delete", subject=f"source:{source_id}",
                     changes={"summary": f"Deleted source {row.name!r}"})
        alert_rules.forget(conn, destination_ids=dest_ids, source_id=source_id, actor=actor)
    alert_rules.announce()


# ---------------------------------------------------------------- destinations


def add_destination(
    engine: Engine,
    source_id: int,
    *,
    slug: str,
    mode: str,
    enabled: bool,
    settings: dict[str, Any],
    actor: str = "system",
    label: str | None = None,
) -> dict[str, Any]:
    with _Tx(engine) as conn:
        if conn.execute(select(sources.c.id).where(sources.c.id == source_id)).one_or_none() is None:
            raise NotFound(f"source {source_id}")
        dest_id = conn.execute(
            destinations.insert().values(
                source_id=source_id,
                slug=slug,
                mode=mode,
                enabled=enabled,
                settings=settings,
                created_at=now(),
                updated_at=now(),
            )
        ).inserted_primary_key[0]
        state = "enabled" if enabled else "disabled"
        _bump(conn, source_id, actor, f"Added {label or slug} ({mode} mode, {state})", action="destination.create",
              subject=f"destination:{dest_id}")
        return _destination_dict(conn.execute(select(destinations).where(destinations.c.id == dest_id)).one())


def list_destinations(engine: Engine, source_id: int | None = None) -> list[dict[str, Any]]:
    query = select(destinations).order_by(destinations.c.id)
    if source_id is not None:
        query = query.where(destinations.c.source_id == source_id)
    with read_only(engine) as conn:
        return [_destination_dict(r) for r in conn.execute(query)]


def get_destination(engine: Engine, destination_id: int) -> dict[str, Any]:
    with read_only(engine) as conn:
        row = conn.execute(select(destinations).where(destinations.c.id == destination_id)).one_or_none()
    if row is None:
        raise NotFound(f"destination {destination_id}")
    return _destination_dict(row)


def get_destinations(engine: Engine, destination_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Several destinations in one read (the delivery worker's claims for many lanes at once);
    a missing id is left out."""
    if not destination_ids:
        return {}
    with read_only(engine) as conn:
        rows = conn.execute(select(destinations).where(destinations.c.id.in_(list(destination_ids)))).all()
    return {row.id: _destination_dict(row) for row in rows}


def update_destination(
    engine: Engine,
    destination_id: int,
    *,
    settings: dict[str, Any] | None = None,
    enabled: bool | None = None,
    mode: str | None = None,
    actor: str = "system",
    label: str | None = None,
    expected: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Replace the settings (callers merge first) and/or change enabled and mode.

    ``expected``: the destination as the caller read it to merge; if its settings, enabled or
    mode differ now, nothing is written and ``Changed`` is raised (the caller merges again)."""
    with _Tx(engine) as conn:
        before = _locked_destination(conn, destination_id)
        if expected is not None and _editable(_destination_dict(before)) != _editable(expected):
            raise Changed(f"destination {destination_id}")
        values: dict[str, Any] = {"updated_at": now()}
        changes: list[str] = []
        if settings is not None and settings != dict(before.settings or {}):
            values["settings"] = settings
            changed_keys = sorted(
                k for k in set(settings) | set(before.settings or {})
                if settings.get(k) != (before.settings or {}).get(k)
            )
            changes.append("changed " + ", ".join(changed_keys))
        if enabled is not None and enabled != bool(before.enabled):
            values["enabled"] = enabled
            changes.append("enabled" if enabled else "disabled")
        if mode is not None and mode != before.mode:
            values["mode"] = mode
            changes.append(f"switched to {mode} mode")
        conn.execute(destinations.update().where(destinations.c.id == destination_id).values(**values))
        if changes:
            _bump(conn, before.source_id, actor, f"{label or before.slug}: " + "; ".join(changes),
                  action="destination.update", subject=f"destination:{destination_id}")
        return _destination_dict(conn.execute(select(destinations).where(destinations.c.id == destination_id)).one())


def set_filters(
    engine: Engine, destination_id: int, filters: list[dict[str, Any]], *, actor: str = "system",
    label: str | None = None, expected: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Replace a destination's (already validated) filter list: a new settings version, so the
    bundle and cloud routing pick it up (docs/filters.md). ``expected``: the list the caller
    changed; if the stored one differs now, ``Changed`` (nothing written)."""
    with _Tx(engine) as conn:
        before = _locked_destination(conn, destination_id)
        if expected is not None and list(before.filters or []) != expected:
            raise Changed(f"destination {destination_id}")
        if list(before.filters or []) != filters:
            conn.execute(destinations.update().where(destinations.c.id == destination_id)
                         .values(filters=filters or None, updated_at=now()))
            # The audit entry is governance's: server/api/filters.py records it with the filter list.
            _bump(conn, before.source_id, actor, f"{label or before.slug}: filters changed ({len(filters)} now)",
                  action="")
        return _destination_dict(conn.execute(select(destinations).where(destinations.c.id == destination_id)).one())


def delete_destination(engine: Engine, destination_id: int, *, actor: str = "system", label: str | None = None) -> None:
    with _Tx(engine) as conn:
        before = _locked_destination(conn, destination_id)
        conn.execute(destinations.delete().where(destinations.c.id == destination_id))
        _bump(conn, before.source_id, actor, f"Removed {label or before.slug}", action="destination.delete",
              subject=f"destination:{destination_id}")
        alert_rules.forget(conn, destination_ids=[destination_id], actor=actor)
    alert_rules.announce()


def _locked_destination(conn: Connection, destination_id: int):
    """The destination's row, locked until commit on PostgreSQL (``FOR UPDATE``: a concurrent
    edit waits, then reads what this one wrote); SQLite's write transactions are serial already
    (``BEGIN IMMEDIATE``, server/store/engine.py)."""
    row = conn.execute(
        select(destinations).where(destinations.c.id == destination_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"destination {destination_id}")
    return row


def _editable(dest: dict[str, Any]) -> tuple[Any, ...]:
    return dest["settings"], dest["enabled"], dest["mode"]


# ---------------------------------------------------------------- history


def list_versions(engine: Engine, source_id: int) -> list[dict[str, Any]]:
    get_source(engine, source_id)
    with read_only(engine) as conn:
        rows = conn.execute(
            select(
                settings_versions.c.version,
                settings_versions.c.created_at,
                settings_versions.c.actor,
                settings_versions.c.summary,
            )
            .where(settings_versions.c.source_id == source_id)
            .order_by(settings_versions.c.version.desc())
        ).all()
    return [_row(r) for r in rows]


def get_version(engine: Engine, source_id: int, version: int) -> dict[str, Any]:
    if not 0 < version < 2**31:  # the column is a 32-bit INTEGER: PostgreSQL would refuse the query
        raise NotFound(f"version {version} of source {source_id}")
    with read_only(engine) as conn:
        row = conn.execute(
            select(settings_versions).where(
                settings_versions.c.source_id == source_id, settings_versions.c.version == version
            )
        ).one_or_none()
    if row is None:
        raise NotFound(f"version {version} of source {source_id}")
    data = _row(row)
    data.pop("id")
    return data


def rollback(engine: Engine, source_id: int, version: int, *, actor: str = "system") -> int:
    """Make version ``version``'s content current again, as a new version; return its number."""
    target = get_version(engine, source_id, version)["content"]
    with _Tx(engine) as conn:
        # Deleted since it was read (a concurrent delete): nothing to roll back.
        if conn.execute(select(sources.c.id).where(sources.c.id == source_id).with_for_update()).first() is None:
            raise NotFound(f"source {source_id}")
        conn.execute(
            sources.update()
            .where(sources.c.id == source_id)
            .values(name=target["source"]["name"], enabled=target["source"]["enabled"],
                    library_name=target["source"].get("library_name"),
                    server_cookies=bool(target["source"].get("server_cookies")))
        )
        wanted = {d["id"]: d for d in target["destinations"]}
        existing = set(
            conn.execute(select(destinations.c.id).where(destinations.c.source_id == source_id)).scalars()
        )
        removed = sorted(existing - set(wanted))
        for dest_id in removed:
            conn.execute(destinations.delete().where(destinations.c.id == dest_id))
        for dest_id, d in wanted.items():
            values = dict(slug=d["slug"], mode=d["mode"], enabled=d["enabled"], settings=d["settings"],
                          filters=d.get("filters") or None, updated_at=now())
            if dest_id in existing:
                conn.execute(destinations.update().where(destinations.c.id == dest_id).values(**values))
            else:
                conn.execute(destinations.insert().values(id=dest_id, source_id=source_id, created_at=now(), **values))
        new_version = _bump(conn, source_id, actor, f"Rolled back to version {version}", action="source.rollback")
        alert_rules.forget(conn, destination_ids=removed, actor=actor)
    alert_rules.announce()
    return new_version


# ---------------------------------------------------------------- the bundle's query


def public_config(engine: Engine, write_key: str) -> dict[str, Any] | None:
    """The source behind ``write_key`` at its current version, or None for an unknown key.

    One query over two unique indexes (sources.write_key, settings_versions(source_id, version)).
    Settings come back whole: the caller strips what the manifests mark secret.
    """
    query = (
        select(
            sources.c.id,
            sources.c.name,
            sources.c.enabled,
            sources.c.settings_version,
            settings_versions.c.content,
            settings_versions.c.created_at,
        )
        .join(
            settings_versions,
            (settings_versions.c.source_id == sources.c.id)
            & (settings_versions.c.version == sources.c.settings_version),
        )
        .where(sources.c.write_key == write_key)
    )
    with read_only(engine) as conn:
        row = conn.execute(query).one_or_none()
    if row is None:
        return None
    return {
        "source_id": row.id,
        "name": row.name,
        "write_key": write_key,
        "enabled": bool(row.enabled),
        "settings_version": row.settings_version,
        "version_created_at": row.created_at,
        "destinations": row.content["destinations"],
        "library_name": row.content["source"].get("library_name"),
        "server_cookies": bool(row.content["source"].get("server_cookies")),
    }


def current_versions(engine: Engine) -> dict[str, int]:
    """write_key → settings_version for every source: the cheap cross-process freshness check."""
    with read_only(engine) as conn:
        return {k: v for k, v in conn.execute(select(sources.c.write_key, sources.c.settings_version))}


def count_sources(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(func.count()).select_from(sources)).scalar_one()
