"""Edits that overlap, on SQLite and PostgreSQL: two changes to one destination both stay, an
edit that meets a delete is a 404 (not a 500), and a stale write is refused by the store.

The deterministic tests make the other edit happen between a read and its write, by running it
inside the merge step (``merge_settings``, ``check_filters``, ``get_version``) of the first: the
real store, the real service, only the timing forced."""

from __future__ import annotations

import threading

import pytest

from server.api import filters as filter_service
from server.api import service
from server.store import audit, workspace
from tests.test_admin_api import API, assert_error

BOOLEANS = ["track_initial_page", "people", "track_all_pages", "track_named_pages", "track_categorized_pages",
            "cross_subdomain_cookie"]


@pytest.fixture
def mixpanel(engine, catalog):
    source = workspace.create_source(engine, "Site")
    settings = {"token": "0123456789abcdef0123456789abcdef", **{key: False for key in BOOLEANS}}
    return service.add_destination(engine, catalog, source["id"], {"slug": "mixpanel", "mode": "device",
                                                                   "settings": settings}, "test")


def in_the_middle(monkeypatch, module, name: str, action, *, call: int = 1, after: bool = False) -> list[int]:
    """Run ``action`` once, at the ``call``-th call of ``module.name`` (before it, or ``after``
    it returned); return the calls counted."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call and not after:
            action()
        result = real(*args, **kwargs)
        if len(calls) == call and after:
            action()
        return result

    monkeypatch.setattr(module, name, wrapped)
    return calls


def test_an_edit_overtaken_by_another_is_merged_again_so_both_stay(engine, catalog, mixpanel, monkeypatch):
    dest_id = mixpanel["id"]
    calls = in_the_middle(monkeypatch, service, "merge_settings", lambda: workspace.update_destination(
        engine, dest_id, settings={**workspace.get_destination(engine, dest_id)["settings"], "people": True},
        actor="other"))
    service.update_destination(engine, catalog, dest_id, {"settings": {"track_all_pages": True}}, "me")
    settings = workspace.get_destination(engine, dest_id)["settings"]
    assert settings["people"] is True and settings["track_all_pages"] is True
    assert len(calls) == 2  # merged once more, into what the other edit had saved
    mine = audit.list_entries(engine, actor="me")[0]
    assert mine["changes"]["summary"] == "Mixpanel: changed track_all_pages"  # not the other edit's key


def test_many_edits_at_once_to_different_settings_all_stay(engine, catalog, mixpanel):
    start, errors = threading.Barrier(len(BOOLEANS)), []

    def edit(key: str) -> None:
        start.wait()
        try:
            service.update_destination(engine, catalog, mixpanel["id"], {"settings": {key: True}}, f"user-{key}")
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=edit, args=(key,)) for key in BOOLEANS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    settings = workspace.get_destination(engine, mixpanel["id"])["settings"]
    assert {key: settings[key] for key in BOOLEANS} == {key: True for key in BOOLEANS}
    summaries = sorted(e["changes"]["summary"] for e in audit.list_entries(engine, action="destination.update"))
    assert summaries == sorted(f"Mixpanel: changed {key}" for key in BOOLEANS)


def test_the_store_refuses_a_write_based_on_a_stale_read(engine, mixpanel):
    stale = workspace.get_destination(engine, mixpanel["id"])
    workspace.update_destination(engine, mixpanel["id"], enabled=True)
    with pytest.raises(workspace.Changed):
        workspace.update_destination(engine, mixpanel["id"], settings={**stale["settings"], "people": True},
                                     expected=stale)
    assert workspace.get_destination(engine, mixpanel["id"])["settings"]["people"] is False


def test_an_edit_that_meets_a_delete_is_a_404(client, engine, mixpanel, monkeypatch):
    in_the_middle(monkeypatch, service, "merge_settings",
                  lambda: workspace.delete_destination(engine, mixpanel["id"]))
    answer = client.patch(f"{API}/destinations/{mixpanel['id']}", json={"settings": {"people": True}})
    assert_error(answer, 404, "not_found")


def test_two_filters_added_at_once_both_stay_and_a_delete_by_a_stale_index_is_refused(engine, catalog, mixpanel,
                                                                                      monkeypatch):
    dest_id, theirs, mine = mixpanel["id"], {"if": "type = 'group'", "action": "drop"}, \
        {"if": "type = 'alias'", "action": "drop"}
    in_the_middle(monkeypatch, filter_service, "check_filters",
                  lambda: workspace.set_filters(engine, dest_id, [theirs], actor="other"))
    assert filter_service.add_filter(engine, catalog, dest_id, mine, "me") == [theirs, mine]
    monkeypatch.undo()

    seen = workspace.get_destination(engine, dest_id)["filters"]
    workspace.set_filters(engine, dest_id, [mine], actor="other")  # "theirs" deleted by someone else
    with pytest.raises(Exception) as refused:  # index 0 was "theirs" when the user looked
        filter_service.delete_filter(engine, catalog, dest_id, 0, "me", expected=seen)
    assert getattr(refused.value, "status", None) == 409
    assert workspace.get_destination(engine, dest_id)["filters"] == [mine]


def test_filters_added_to_a_destination_deleted_meanwhile_is_a_404(client, engine, mixpanel, monkeypatch):
    # The second check is the whole list's, after set_filters read the destination.
    in_the_middle(monkeypatch, filter_service, "check_filters",
                  lambda: workspace.delete_destination(engine, mixpanel["id"]), call=2)
    answer = client.post(f"{API}/destinations/{mixpanel['id']}/filters", json={"if": "type = 'group'",
                                                                              "action": "drop"})
    assert_error(answer, 404, "not_found")


def test_a_rollback_that_meets_the_sources_delete_is_a_404(client, engine, mixpanel, monkeypatch):
    source_id = mixpanel["source_id"]
    in_the_middle(monkeypatch, workspace, "get_version", lambda: workspace.delete_source(engine, source_id),
                  after=True)
    assert_error(client.post(f"{API}/sources/{source_id}/versions/2/rollback"), 404, "not_found")
