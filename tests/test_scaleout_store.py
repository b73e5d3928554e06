"""Store operations that several processes may run at the same moment on one PostgreSQL: the
schema migration at start-up, and the first-run secrets kept in ``app_state``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select

from scaleout_cluster import ROOT
from server.store import open_store, tokens, workspace
from server.store.migrations import MIGRATIONS, schema_migrations

pytestmark = pytest.mark.postgres


def test_servers_starting_together_on_an_empty_database_migrate_it_once(pg):
    url = pg.create_database()
    script = f"from server.store import open_store\nopen_store({url!r}).dispose()\nprint('ok')"
    runs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, [err for _, err in results]
    engine = open_store(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(schema_migrations)).scalar_one() == len(MIGRATIONS)
    finally:
        engine.dispose()


def test_two_processes_creating_the_same_first_run_secret_agree_on_one(pg):
    """Both see no secret, both make one; the slower must adopt the winner's, not fail."""
    url = pg.create_database()
    engines = [open_store(url) for _ in range(2)]
    barrier = threading.Barrier(2)
    got: list[str] = []
    errors: list[BaseException] = []

    def make() -> str:
        barrier.wait(10)  # both have looked and found nothing
        time.sleep(0.1)
        return f"secret-of-{threading.get_ident()}"

    def first_request(engine) -> None:
        try:
            got.append(tokens.get_or_create_state(engine, "session_secret_race", make))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_request, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for engine in engines:
        engine.dispose()
    assert not errors, errors
    assert len(got) == 2 and got[0] == got[1]
    engine = open_store(url)
    try:
        assert tokens.get_state(engine, "session_secret_race") == got[0]
    finally:
        engine.dispose()


def test_sources_created_at_once_by_several_servers_get_distinct_slugs(pg):
    """The slug names the source's warehouse schema: two sources must never share one."""
    url = pg.create_database()
    engines = [open_store(url) for _ in range(4)]
    barrier = threading.Barrier(4)
    slugs: list[str] = []

    def create(engine) -> None:
        barrier.wait(10)
        slugs.append(workspace.create_source(engine, "Shop")["slug"])

    threads = [threading.Thread(target=create, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for engine in engines:
        engine.dispose()
    assert sorted(slugs) == ["shop", "shop_2", "shop_3", "shop_4"]
