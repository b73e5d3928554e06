"""The workspace store on SQLite and on a real PostgreSQL: sources, destinations, the settings
history (snapshot + version bump in one transaction), rollback, the bundle's query, listeners."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.store import notify, tokens, workspace
from server.store.schema import admin_tokens, destinations, settings_versions, sources

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def _add(engine, source_id, slug="hotjar", settings=None, **kw):
    return workspace.add_destination(
        engine, source_id, slug=slug, mode=kw.pop("mode", "device"), enabled=kw.pop("enabled", True),
        settings=settings if settings is not None else {"site_id": "123"}, **kw,
    )


def _state(engine, source_id):
    """What a version snapshot should hold: the source's name/enabled and its destinations."""
    source = workspace.get_source(engine, source_id)
    return {
        "source": {"name": source["name"], "enabled": source["enabled"]},
        "destinations": [
            {k: d[k] for k in ("id", "slug", "mode", "enabled", "settings")}
            for d in workspace.list_destinations(engine, source_id)
        ],
    }


def test_sources_create_list_update_delete(engine):
    a = workspace.create_source(engine, "Marketing site")
    b = workspace.create_source(engine, "Marketing site")
    assert (a["name"], a["enabled"], a["settings_version"]) == ("Marketing site", True, 1)
    assert a["slug"] == "marketing_site" and b["slug"] == "marketing_site_2"
    assert [s["id"] for s in workspace.list_sources(engine)] == [a["id"], b["id"]]

    renamed = workspace.update_source(engine, a["id"], name="Shop", enabled=False)
    assert (renamed["name"], renamed["enabled"], renamed["settings_version"]) == ("Shop", False, 2)
    assert workspace.get_source(engine, a["id"])["name"] == "Shop"

    _add(engine, a["id"])
    workspace.delete_source(engine, a["id"])
    assert [s["id"] for s in workspace.list_sources(engine)] == [b["id"]]
    with pytest.raises(workspace.NotFound):
        workspace.get_source(engine, a["id"])
    # Foreign keys cascade: the source's destinations and history go with it.
    with engine.connect() as conn:
        assert conn.execute(select(destinations).where(destinations.c.source_id == a["id"])).all() == []
        assert conn.execute(select(settings_versions).where(settings_versions.c.source_id == a["id"])).all() == []
    for call in (
        lambda: workspace.update_source(engine, a["id"], name="x"),
        lambda: workspace.delete_source(engine, a["id"]),
        lambda: workspace.rotate_write_key(engine, a["id"]),
        lambda: _add(engine, a["id"]),
    ):
        with pytest.raises(workspace.NotFound):
            call()


def test_long_names_never_overflow_the_slug_column(engine):
    # 200 characters is the longest name the API accepts; the second copy needs a suffix.
    first = workspace.create_source(engine, "n" * 200)
    second = workspace.create_source(engine, "n" * 200)
    assert first["slug"] != second["slug"] and len(second["slug"]) <= 200


def test_write_keys_are_long_random_url_safe_and_unique(engine):
    keys = {workspace.new_write_key() for _ in range(2000)}
    assert len(keys) == 2000
    for key in keys:
        assert URL_SAFE.match(key)
        assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) * 8 >= 128

    created = [workspace.create_source(engine, f"s{i}")["write_key"] for i in range(5)]
    assert len(set(created)) == 5 and all(URL_SAFE.match(k) for k in created)
    # The database enforces uniqueness too.
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(sources.insert().values(
            name="dup", slug="dup", write_key=created[0], enabled=True, settings_version=1,
            created_at=datetime.now(timezone.utc), updated_at=datetime.now(timezone.utc)))


def test_rotating_the_write_key_makes_a_new_one_and_bumps_the_version(engine):
    source = workspace.create_source(engine, "Site")
    rotated = workspace.rotate_write_key(engine, source["id"])
    assert rotated["write_key"] != source["write_key"] and URL_SAFE.match(rotated["write_key"])
    assert rotated["settings_version"] == 2
    assert workspace.public_config(engine, source["write_key"]) is None
    assert workspace.public_config(engine, rotated["write_key"])["source_id"] == source["id"]


def test_every_change_bumps_the_version_and_writes_an_immutable_snapshot(engine):
    source = workspace.create_source(engine, "Site", actor="alice")
    sid = source["id"]
    snapshots = {1: _state(engine, sid)}

    def changed(expected_version):
        assert workspace.get_source(engine, sid)["settings_version"] == expected_version
        snapshots[expected_version] = _state(engine, sid)

    d1 = _add(engine, sid, actor="bob")
    changed(2)
    d2 = _add(engine, sid, slug="google_analytics_4", settings={"measurement_id": "G-AAA"}, enabled=False)
    changed(3)
    workspace.update_destination(engine, d1["id"], settings={"site_id": "456"})
    changed(4)
    workspace.update_destination(engine, d2["id"], enabled=True, mode="cloud")
    changed(5)
    workspace.update_source(engine, sid, name="Renamed")
    changed(6)
    workspace.delete_destination(engine, d1["id"])
    changed(7)
    # Saving unchanged is not a new version.
    workspace.update_destination(engine, d2["id"], settings={"measurement_id": "G-AAA"}, enabled=True)
    workspace.update_source(engine, sid, name="Renamed", enabled=True)
    assert workspace.get_source(engine, sid)["settings_version"] == 7

    history = workspace.list_versions(engine, sid)
    assert [v["version"] for v in history] == [7, 6, 5, 4, 3, 2, 1]
    assert history[-1]["actor"] == "alice" and history[-2]["actor"] == "bob"
    assert all(v["summary"] and "\n" not in v["summary"] for v in history)
    assert "Renamed" in history[1]["summary"]
    # Each snapshot still holds exactly the state right after its change.
    for number, state in snapshots.items():
        assert workspace.get_version(engine, sid, number)["content"] == state
    with pytest.raises(workspace.NotFound):
        workspace.get_version(engine, sid, 8)


def test_a_change_and_its_version_commit_together_or_not_at_all(engine):
    source = workspace.create_source(engine, "Site")
    sid = source["id"]
    calls = []
    unsubscribe = notify.SETTINGS.subscribe(lambda *args: calls.append(args))
    try:
        # Occupy the next version number so that writing the snapshot fails mid-transaction.
        with engine.begin() as conn:
            conn.execute(settings_versions.insert().values(
                source_id=sid, version=2, created_at=datetime.now(timezone.utc), actor="test", summary="taken",
                content={"source": {}, "destinations": []}))
        with pytest.raises(IntegrityError):
            _add(engine, sid)
    finally:
        unsubscribe()
    # The destination insert was rolled back with the failed version bump, and nobody was told.
    assert workspace.list_destinations(engine, sid) == []
    assert workspace.get_source(engine, sid)["settings_version"] == 1
    assert calls == []


def test_rollback_writes_a_new_version_with_exactly_the_old_content(engine):
    sid = workspace.create_source(engine, "Site")["id"]
    other = workspace.create_source(engine, "Other site")["id"]
    kept = _add(engine, sid, settings={"site_id": "1"})
    removed = _add(engine, sid, slug="google_analytics_4", mode="cloud",
                   settings={"measurement_id": "G-OLD", "api_secret": "s3cret"})
    target = workspace.get_source(engine, sid)["settings_version"]
    target_state = _state(engine, sid)

    workspace.update_destination(engine, kept["id"], settings={"site_id": "2"}, enabled=False)
    workspace.delete_destination(engine, removed["id"])
    # The id freed by the deletion (the highest so far) must not be handed to anyone else.
    elsewhere = _add(engine, other, settings={"site_id": "9"})
    assert elsewhere["id"] not in (kept["id"], removed["id"])
    later = _add(engine, sid, slug="meta_pixel", settings={"pixel_id": "42"})
    workspace.update_source(engine, sid, name="Renamed", enabled=False)
    before = workspace.get_source(engine, sid)["settings_version"]

    new_version = workspace.rollback(engine, sid, target, actor="carol")

    assert new_version == before + 1 == workspace.get_source(engine, sid)["settings_version"]
    assert _state(engine, sid) == target_state
    restored = {d["id"]: d for d in workspace.list_destinations(engine, sid)}
    assert restored[removed["id"]]["settings"] == {"measurement_id": "G-OLD", "api_secret": "s3cret"}
    assert restored[removed["id"]]["mode"] == "cloud"
    assert later["id"] not in restored
    assert workspace.get_version(engine, sid, new_version)["content"] == target_state
    latest = workspace.list_versions(engine, sid)[0]
    assert (latest["version"], latest["actor"]) == (new_version, "carol")
    assert str(target) in latest["summary"]
    # The other source is untouched.
    assert [d["id"] for d in workspace.list_destinations(engine, other)] == [elsewhere["id"]]
    with pytest.raises(workspace.NotFound):
        workspace.rollback(engine, sid, 999)


def test_public_config_is_the_current_version(engine):
    source = workspace.create_source(engine, "Site")
    dest = _add(engine, source["id"], settings={"site_id": "1"})
    workspace.update_destination(engine, dest["id"], settings={"site_id": "2"})
    config = workspace.public_config(engine, source["write_key"])
    assert config["source_id"] == source["id"] and config["name"] == "Site" and config["enabled"] is True
    assert config["write_key"] == source["write_key"]
    assert config["settings_version"] == 3
    assert config["version_created_at"].tzinfo is not None
    assert config["destinations"] == [
        {"id": dest["id"], "slug": "hotjar", "mode": "device", "enabled": True, "settings": {"site_id": "2"}}
    ]
    assert workspace.public_config(engine, "no-such-key") is None
    assert workspace.current_versions(engine) == {source["write_key"]: 3}


def test_listeners_hear_about_changes_after_commit(engine):
    source = workspace.create_source(engine, "Site")
    heard = []

    def listener(source_id, write_key, version):
        # A separate connection already sees the change: the listener runs after commit.
        committed = workspace.get_source(engine, source_id)["settings_version"] if version > 0 else None
        heard.append((source_id, write_key, version, committed))

    unsubscribe = notify.SETTINGS.subscribe(listener)
    try:
        dest = _add(engine, source["id"])
        workspace.update_destination(engine, dest["id"], enabled=False)
    finally:
        unsubscribe()
    _add(engine, source["id"])  # after unsubscribing: not heard
    key = source["write_key"]
    assert heard == [(source["id"], key, 2, 2), (source["id"], key, 3, 3)]


def test_a_failing_listener_does_not_undo_or_hide_a_committed_change(engine, caplog):
    source = workspace.create_source(engine, "Site")
    heard = []

    def broken(*change):
        raise RuntimeError("listener bug")

    unsubscribe = [notify.SETTINGS.subscribe(broken), notify.SETTINGS.subscribe(lambda *c: heard.append(c))]
    try:
        dest = _add(engine, source["id"])
    finally:
        for off in unsubscribe:
            off()
    assert workspace.get_destination(engine, dest["id"])["slug"] == "hotjar"
    assert heard == [(source["id"], source["write_key"], 2)]
    assert "listener bug" in caplog.text


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(sqlite_url):
    from server.store import open_store

    engine = open_store(sqlite_url)
    try:
        with engine.connect() as conn:
            pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") >= 1000
            assert pragma("synchronous") == 2  # FULL
    finally:
        engine.dispose()


def test_admin_tokens_are_stored_only_as_hashes(engine):
    token = tokens.create_token(engine, "ci")
    assert tokens.check_token(engine, token)
    assert not tokens.check_token(engine, token + "x")
    assert not tokens.check_token(engine, "")
    assert tokens.check_token(engine, "bootstrap-value", bootstrap="bootstrap-value")
    with engine.connect() as conn:
        rows = conn.execute(select(admin_tokens)).all()
    assert len(rows) == 1 and token not in str(tuple(rows[0])) and rows[0].name == "ci"


def test_write_keys_are_letters_and_digits_so_a_command_line_never_reads_one_as_an_option():
    from server.store.workspace import new_write_key

    keys = {new_write_key() for _ in range(2000)}
    assert len(keys) == 2000
    assert all(len(k) == 32 and k.isascii() and k.isalnum() for k in keys)
