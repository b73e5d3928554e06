"""Regulations (delete / suppress a set of userIds) and the suppression list they maintain.

A regulation is a row in ``regulations``; a delete runs in the background in bounded batches,
and its progress (which store it is on, counts so far) is kept in the row, so a process that
dies mid-way leaves a ``running`` row that the next process resumes (see
``server/admin/regulations.py``... the runner lives in the admin plane).

``suppressions`` is the list the collector consults: one row per (user_id, source_id), with
source_id 0 meaning every source. ``suppression_sequence`` is bumped on every change, so each
process can tell cheaply whether its cached copy is stale.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Connection, Index, Integer, String, Table, Text

from server.store.schema import Id, UTCDateTime, metadata

ALL_SOURCES = 0

regulations = Table(
    "regulations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("type", String(30), nullable=False),
    Column("status", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("user_ids", JSON, nullable=False),
    Column("source_ids", JSON, nullable=True),  # None: every source
    Column("counts", JSON, nullable=False),
    Column("stage", String(60), nullable=True),  # where a running delete has got to
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    sqlite_autoincrement=True,
)
Index("ix_regulations_status", regulations.c.status)

suppressions = Table(
    "suppressions",
    metadata,
    Column("user_id", String(400), primary_key=True),
    Column("source_id", Id, primary_key=True),  # ALL_SOURCES (0) = every source
    Column("regulation_id", Id, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

suppression_sequence = Table(
    "suppression_sequence",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)


def create_tables(conn: Connection) -> None:
    for table in (regulations, suppressions, suppression_sequence):
        table.create(conn, checkfirst=True)
