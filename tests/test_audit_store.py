"""The audit log's store, on SQLite and PostgreSQL: workspace changes record one entry each with
a before/after diff whose secrets are masks; filters and paging; retention deletes only old
entries; governance entries appear in the audit once, in the same transaction."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from server.catalog import SECRET_MASK
from server.config import Config
from server.privacy.runner import run_retention
from server.store import audit, governance, workspace


def _entries(engine, **filters):
    return audit.list_entries(engine, **filters)


def test_each_workspace_change_is_one_entry_with_a_masked_diff(engine):
    source = workspace.create_source(engine, "Site", actor="alice")
    dest = workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=False, actor="alice",
                                     settings={"url": "https://a.example/in", "shared_secret": "first-secret"})
    workspace.update_destination(engine, dest["id"], actor="bob", enabled=True,
                                 settings={"url": "https://b.example/in", "shared_secret": "second-secret"})
    workspace.update_source(engine, source["id"], name="Shop", actor="bob")
    workspace.rotate_write_key(engine, source["id"], actor="carol")
    workspace.delete_destination(engine, dest["id"], actor="carol")
    workspace.rollback(engine, source["id"], 3, actor="dave")
    workspace.delete_source(engine, source["id"], actor="erin")

    rows = list(reversed(_entries(engine)))
    assert [(r["action"], r["actor"], r["subject"]) for r in rows] == [
        ("source.create", "alice", f"source:{source['id']}"),
        ("destination.create", "alice", f"destination:{dest['id']}"),
        ("destination.update", "bob", f"destination:{dest['id']}"),
        ("source.update", "bob", f"source:{source['id']}"),
        ("source.rotate_write_key", "carol", f"source:{source['id']}"),
        ("destination.delete", "carol", f"destination:{dest['id']}"),
        ("source.rollback", "dave", f"source:{source['id']}"),
        ("source.delete", "erin", f"source:{source['id']}"),
    ]
    created, updated, renamed = rows[1]["changes"], rows[2]["changes"], rows[3]["changes"]
    assert created["settings.shared_secret"] == {"before": None, "after": SECRET_MASK}
    assert created["settings.url"] == {"before": None, "after": "https://a.example/in"}  # public: shown
    assert updated["enabled"] == {"before": False, "after": True}
    assert updated["settings.url"] == {"before": "https://a.example/in", "after": "https://b.example/in"}
    assert updated["settings.shared_secret"] == {"before": SECRET_MASK, "after": SECRET_MASK}  # changed, not shown
    assert renamed["name"] == {"before": "Site", "after": "Shop"}
    # The rollback to version 3 (destination enabled, source still "Site") names what it put back.
    assert rows[6]["changes"][f"destination:{dest['id']}.enabled"] == {"before": None, "after": True}
    assert rows[6]["changes"]["name"] == {"before": "Shop", "after": "Site"}
    text = repr(rows)
    assert "first-secret" not in text and "second-secret" not in text
    assert source["write_key"] not in text
    assert all(r["origin"] == {"address": None, "user_agent": "system"} for r in rows)


def test_unchanged_saves_and_rolled_back_writes_leave_no_entry(engine):
    source = workspace.create_source(engine, "Site")
    workspace.update_source(engine, source["id"], name="Site")
    assert len(_entries(engine)) == 1
    try:
        workspace.add_destination(engine, source["id"] + 99, slug="webhooks", mode="cloud", enabled=False, settings={})
    except workspace.NotFound:
        pass
    assert len(_entries(engine)) == 1


def test_a_setting_unknown_to_the_catalog_is_masked(engine):
    source = workspace.create_source(engine, "Site")
    workspace.add_destination(engine, source["id"], slug="webhooks", mode="cloud", enabled=False,
                              settings={"url": "https://a.example/in", "mystery": "maybe-secret"})
    changes = _entries(engine, action="destination.create")[0]["changes"]
    assert changes["settings.mystery"]["after"] == SECRET_MASK


def test_filters_and_paging(engine):
    for n in range(5):
        audit.record(engine, actor="alice" if n % 2 else "bob", action="destination.update" if n < 3 else "token.create",
                     subject=f"destination:{n}" if n < 3 else f"token:t{n}", origin={"address": "10.0.0.1", "user_agent": "UA"})
    assert [r["actor"] for r in _entries(engine, actor="alice")] == ["alice", "alice"]
    assert len(_entries(engine, action="destination")) == 3 and len(_entries(engine, action="destination.update")) == 3
    assert len(_entries(engine, action="dest")) == 0  # a prefix is a whole dotted part
    assert len(_entries(engine, subject="token")) == 2 and len(_entries(engine, subject="destination:1")) == 1
    first = _entries(engine, limit=2)
    second = _entries(engine, limit=2, before_id=first[-1]["id"])
    third = _entries(engine, limit=2, before_id=second[-1]["id"])
    ids = [r["id"] for r in first + second + third]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert first[0]["origin"] == {"address": "10.0.0.1", "user_agent": "UA"}
    now = datetime.now(timezone.utc)
    assert len(_entries(engine, since=now - timedelta(minutes=1))) == 5
    assert _entries(engine, until=now - timedelta(minutes=1)) == []


def test_retention_deletes_only_old_entries(engine):
    for n in range(3):
        audit.record(engine, actor="a", action="source.update", subject=f"source:{n}")
    oldest = _entries(engine)[-1]["id"]
    with engine.begin() as conn:
        conn.execute(update(audit.audit_log).where(audit.audit_log.c.id == oldest)
                     .values(at=datetime.now(timezone.utc) - timedelta(days=400)))
    counts = run_retention(engine, Config(database_url="sqlite://", audit_retention_days=365))
    assert counts["audit_entries"] == 1
    left = _entries(engine)
    assert oldest not in [r["id"] for r in left] and len(left) == 3  # two kept, plus the retention run itself
    assert left[0]["action"] == "retention" and left[0]["changes"]["counts"]["audit_entries"] == 1
    kept = run_retention(engine, Config(database_url="sqlite://", audit_retention_days=0))
    assert "audit_entries" not in kept and len(_entries(engine)) == 4


def test_a_governance_entry_is_also_the_audit_entry(engine):
    entry_id = governance.record(engine, actor="admin", action="replay.history", subject="destination:4",
                                 details={"since": "x"}, counts={"queued": 3})
    (row,) = _entries(engine)
    assert row["action"] == "replay.history" and row["subject"] == "destination:4" and row["actor"] == "admin"
    assert row["changes"] == {"since": "x", "counts": {"queued": 3}, "governance_id": entry_id}
