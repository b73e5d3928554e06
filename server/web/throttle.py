"""Sign-in throttling: per address, per account at an address, per account, and for the CPU.

Every sign-in attempt *reserves* a slot before its password is checked: it inserts one row per
key into ``web_sign_in_failures``, commits, and only then counts that key's rows of the last
minute. The n-th attempt to commit sees at least n rows, so however many attempts race (threads,
processes, servers on one PostgreSQL), at most ``limit`` of them see a count within the limit and
go on to the password check; the rest get 429 without one. A successful sign-in deletes its own
reservation (and its address's earlier failures for that account); a failed one leaves it, so the
rows are the failures. Throttled attempts are recorded too, so hammering keeps an address
throttled instead of buying a fresh try each minute.

The keys, each counted over the last minute (``WINDOW``):

- ``addr-user:<address>|<user name>``: ``PER_ADDRESS_ACCOUNT`` (5) attempts. Guessing one
  account's password from one address.
- ``addr:<address>``: ``PER_ADDRESS`` (20) attempts, whatever the user name, so a fresh user
  name each time doesn't escape the limit.
- ``user:<user name>``: ``PER_ACCOUNT`` (50) attempts from all addresses together, reserved only
  by attempts that passed their address's limits, so one address adds at most 5 a minute to
  it: guessing spread over many addresses stays slow, and locking the account needs more than ten
  real addresses. Nothing a client writes adds addresses (see ``server/api/client_address.py``).

The address is ``server.api.client_address.client_address``: the TCP peer, or with
``SWITCHBOARD_TRUST_PROXY`` the rightmost ``X-Forwarded-For`` entry, which our proxy wrote, so a
spoofed header neither buys fresh attempts nor spends the real admin's.

Finally, at most ``CONCURRENT_CHECKS`` scrypt checks run at once per process (each takes ~16 MiB
and tens of milliseconds of a core); an attempt beyond that is answered 429 at once and its
reservation is given back, so a burst can't saturate the CPU or the memory.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from sqlalchemy import Engine, delete, func, select

from server.store.engine import read_only
from server.store.web import sign_in_failures
from server.store.workspace import now

WINDOW = timedelta(minutes=1)
PER_ADDRESS_ACCOUNT = 5
PER_ADDRESS = 20
PER_ACCOUNT = 50
CONCURRENT_CHECKS = max(1, min(4, (os.cpu_count() or 2) // 2))
KEEP = timedelta(hours=1)  # older rows matter to no limit: deleted as new ones come


def _norm(username: str) -> str:
    return username.strip().lower()[:200]


def address_keys(address: str, username: str) -> list[tuple[str, int]]:
    address = address[:64]
    return [(f"addr-user:{address}|{_norm(username)}", PER_ADDRESS_ACCOUNT), (f"addr:{address}", PER_ADDRESS)]


def account_keys(username: str) -> list[tuple[str, int]]:
    return [(f"user:{_norm(username)}", PER_ACCOUNT)]


def reserve(engine: Engine, keys: list[tuple[str, int]]) -> tuple[list[int], bool]:
    """Insert one row per key, commit, then count: (the new row ids, whether every key is within its limit)."""
    at = now()
    with engine.begin() as conn:
        ids = [
            conn.execute(sign_in_failures.insert().values(key=key, at=at)).inserted_primary_key[0]
            for key, _ in keys
        ]
        conn.execute(delete(sign_in_failures).where(sign_in_failures.c.at < at - KEEP))
    # Counted after the commit: every attempt that committed before us is in the count.
    since = at - WINDOW
    with read_only(engine) as conn:
        within = all(
            conn.execute(select(func.count()).select_from(sign_in_failures).where(
                sign_in_failures.c.key == key, sign_in_failures.c.at >= since)).scalar_one() <= limit
            for key, limit in keys
        )
    return ids, within


def release(engine: Engine, ids: list[int], clear_key: str | None = None) -> None:
    """Give reserved slots back (a sign-in that succeeded, or was never checked)."""
    with engine.begin() as conn:
        if ids:
            conn.execute(delete(sign_in_failures).where(sign_in_failures.c.id.in_(ids)))
        if clear_key:
            conn.execute(delete(sign_in_failures).where(sign_in_failures.c.key == clear_key))


def check_slots(app) -> asyncio.Semaphore:
    """The process's scrypt semaphore (made on first use, inside the running loop)."""
    slots = getattr(app.state, "sign_in_checks", None)
    if slots is None:
        slots = app.state.sign_in_checks = asyncio.Semaphore(CONCURRENT_CHECKS)
    return slots
