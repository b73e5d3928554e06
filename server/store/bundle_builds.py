"""Built bundles kept in the store, and the workspace-wide settings change sequence.

``settings_sequence`` is one row whose ``seq`` every settings change bumps in its own transaction
(``workspace._bump`` and ``workspace._forget_key`` call ``bump_sequence``). A server process
reads that one number once per interval: unchanged means no source changed anywhere, whatever
the number of write keys, so the bundle cache needs no query per key to stay fresh. On
PostgreSQL the UPDATE also takes the row's lock until commit, so sequence order is commit order.

``bundle_builds`` holds each built bundle per (source, settings version, build fingerprint):
gzip and brotli bytes plus the settings document. A cache miss after an eviction or a restart is
one read by primary key, not a render. The fingerprint (``server.cdn.bundles.build_fingerprint``)
covers the JavaScript, the catalog and the URLs a bundle embeds, so a build made by other code or
for another origin is never served. Rows of versions more than ``KEEP_VERSIONS`` behind, or of
another fingerprint, are deleted when a newer build of the source is saved.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger, Column, Connection, Engine, ForeignKey, Index, Integer, LargeBinary, String, Table, bindparam,
    delete, insert, select, update,
)

from server.store.engine import read_only
from server.store.schema import Id, UTCDateTime, metadata, sources

KEEP_VERSIONS = 10  # per source: what pinned (immutable) URLs can still be served from

settings_sequence = Table(
    "settings_sequence",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("seq", BigInteger, nullable=False),
)

bundle_builds = Table(
    "bundle_builds",
    metadata,
    Column("source_id", Id, ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    Column("hash", String(16), nullable=False),
    Column("size", Integer, nullable=False),  # identity length: identity is derived from gzip
    Column("gzip", LargeBinary, nullable=False),
    Column("br", LargeBinary, nullable=False),
    Column("br_quality", Integer, nullable=False),  # 11: polished (and gzip is Zopfli's): cdn/bundles.py
    Column("loaders", String(2000), nullable=False),  # space-separated slugs
    Column("settings", LargeBinary, nullable=False),  # the settings document, JSON
    Column("built_at", UTCDateTime(), nullable=False),
)
Index("ix_bundle_builds_source_hash", bundle_builds.c.source_id, bundle_builds.c.hash)


def create_tables(conn: Connection) -> None:
    """Migration 5: both tables, and the sequence's one row."""
    settings_sequence.create(conn, checkfirst=True)
    bundle_builds.create(conn, checkfirst=True)
    ensure_sequence_row(conn)


def ensure_sequence_row(conn: Connection) -> None:
    if conn.execute(select(settings_sequence.c.seq).where(settings_sequence.c.id == 1)).first() is None:
        conn.execute(insert(settings_sequence).values(id=1, seq=0))


def bump_sequence(conn: Connection) -> None:
    """Inside a settings transaction: tell every process's cache that something changed."""
    conn.execute(update(settings_sequence).where(settings_sequence.c.id == 1).values(seq=settings_sequence.c.seq + 1))


def read_sequence(engine: Engine) -> int:
    with read_only(engine) as conn:
        return conn.execute(select(settings_sequence.c.seq).where(settings_sequence.c.id == 1)).scalar_one_or_none() or 0


def directory(engine: Engine) -> list[tuple[str, int, int, bool]]:
    """(write_key, source_id, settings_version, enabled) of every source: one query, read when the
    sequence moved (so a key nobody has ever had costs no query of its own)."""
    query = select(sources.c.write_key, sources.c.id, sources.c.settings_version, sources.c.enabled)
    with read_only(engine) as conn:
        return [(k, i, v, bool(e)) for k, i, v, e in conn.execute(query)]


_COLUMNS = (bundle_builds.c.version, bundle_builds.c.hash, bundle_builds.c.size, bundle_builds.c.gzip,
            bundle_builds.c.br, bundle_builds.c.br_quality, bundle_builds.c.loaders, bundle_builds.c.settings,
            bundle_builds.c.built_at)


def _as_dict(row) -> dict[str, Any]:
    data = dict(row._mapping)
    data["loaders"] = tuple(data["loaders"].split()) if data["loaders"] else ()
    data["gzip"], data["br"], data["settings"] = bytes(data["gzip"]), bytes(data["br"]), bytes(data["settings"])
    return data


# Built once: a miss after eviction runs this by primary key, and building the expression each
# time cost a third of the read.
_LOAD = select(*_COLUMNS).where(
    bundle_builds.c.source_id == bindparam("s"), bundle_builds.c.version == bindparam("v"),
    bundle_builds.c.fingerprint == bindparam("f"))


def load(engine: Engine, source_id: int, version: int, fingerprint: str) -> dict[str, Any] | None:
    with read_only(engine) as conn:
        row = conn.execute(_LOAD, {"s": source_id, "v": version, "f": fingerprint}).first()
    return None if row is None else _as_dict(row)


def find_hash(engine: Engine, source_id: int, digest: str, fingerprint: str) -> dict[str, Any] | None:
    """The build of ``source_id`` whose content hash is ``digest`` (a pinned URL), if kept."""
    query = select(*_COLUMNS).where(
        bundle_builds.c.source_id == source_id, bundle_builds.c.hash == digest,
        bundle_builds.c.fingerprint == fingerprint).order_by(bundle_builds.c.version.desc()).limit(1)
    with read_only(engine) as conn:
        row = conn.execute(query).first()
    return None if row is None else _as_dict(row)


def save(engine: Engine, source_id: int, version: int, fingerprint: str, build: dict[str, Any]) -> None:
    """Insert (or replace) one build; prune the source's old versions and other fingerprints."""
    values = dict(build, source_id=source_id, version=version, fingerprint=fingerprint,
                  loaders=" ".join(build["loaders"]), built_at=build.get("built_at") or datetime.now(timezone.utc))
    key = ((bundle_builds.c.source_id == source_id) & (bundle_builds.c.version == version)
           & (bundle_builds.c.fingerprint == fingerprint))
    with engine.begin() as conn:
        if conn.execute(select(sources.c.id).where(sources.c.id == source_id)).first() is None:
            return  # deleted meanwhile: nothing to keep
        conn.execute(delete(bundle_builds).where(key))
        conn.execute(insert(bundle_builds).values(**values))
        conn.execute(delete(bundle_builds).where(
            (bundle_builds.c.source_id == source_id)
            & ((bundle_builds.c.version <= version - KEEP_VERSIONS)
               | ((bundle_builds.c.fingerprint != fingerprint) & (bundle_builds.c.version <= version)))))


def polish(engine: Engine, source_id: int, version: int, fingerprint: str, gzip: bytes, br: bytes,
           quality: int) -> None:
    """Keep better encodings of a build (same content, same hash; ``quality``: the brotli
    quality, which also says which gzip encoder: server/cdn/bundles.py)."""
    with engine.begin() as conn:
        conn.execute(update(bundle_builds).where(
            bundle_builds.c.source_id == source_id, bundle_builds.c.version == version,
            bundle_builds.c.fingerprint == fingerprint).values(gzip=gzip, br=br, br_quality=quality))
