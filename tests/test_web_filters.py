"""The destination page's filters (add with preview, reorder, delete) and history replay, and the
debugger's "routed to" explaining filters and suppression — through the web app as a person uses it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from server.store import governance, workspace
from server.store.regulations import suppressions, user_key
from test_web import signed_in, web  # noqa: F401  (fixtures)

HTML = {"accept": "text/html"}


def _hook(client) -> int:
    r = client.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": client.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook"})
    assert r.status_code == 303, r.text
    dest_id = int(r.headers["location"].rsplit("/", 1)[1])
    client.post(f"/destinations/{dest_id}/enabled", data={"csrf_token": client.csrf, "enabled": "true"})
    return dest_id


def _track(client, event: str, **fields) -> None:
    key = workspace.get_source(client.engine, 1)["write_key"]
    body = {"writeKey": key, "event": event, "anonymousId": "anon-1", **fields}
    assert client.post("/v1/track", json=body).status_code == 200


def test_filters_are_added_previewed_reordered_and_deleted_on_the_destination_page(signed_in):
    dest_id = _hook(signed_in)
    _track(signed_in, "Spam", properties={"email": "a@b.c"})
    _track(signed_in, "Order Completed", properties={"email": "a@b.c", "total": 5})
    url = f"/destinations/{dest_id}"

    bad = signed_in.post(url + "/filters", headers=HTML, data={
        "csrf_token": signed_in.csrf, "if": 'event = "Spam', "action": "drop"})
    assert bad.status_code == 422 and "unterminated quote (at character 8)" in bad.text
    assert 'value="event = &#34;Spam"' in bad.text  # what was typed is kept

    preview = signed_in.post(url + "/filters?format=json", data={
        "csrf_token": signed_in.csrf, "if": 'event = "Spam"', "action": "drop", "preview": "1"}).json()
    assert preview["filters"] == [] and preview["filter_preview_candidate"] is True
    outcomes = {p["name"]: (p["outcome"], p["how"]) for p in preview["filter_preview"]}
    assert outcomes["Spam"] == ("dropped", 'dropped by filter 1 (event = "Spam")')
    assert outcomes["Order Completed"] == ("sent", "")

    for data in ({"if": 'event = "Spam"', "action": "drop"},
                 {"if": "exists(properties.email)", "action": "drop_properties", "fields": "properties.email, context.ip"}):
        added = signed_in.post(url + "/filters", data={"csrf_token": signed_in.csrf, **data}, follow_redirects=False)
        assert added.status_code == 303
    page = signed_in.get(url + "?format=json").json()
    assert [f["action"] for f in page["filters"]] == ["drop", "drop_properties"]
    assert page["filter_preview_counts"] == {"sent": 0, "changed": 1, "dropped": 1}
    html = signed_in.get(url, headers=HTML).text
    assert 'id="filter-list"' in html and "Drop fields: properties.email, context.ip" in html

    signed_in.post(url + "/filters/1", data={"csrf_token": signed_in.csrf, "move": "up"})
    assert [f["action"] for f in workspace.get_destination(signed_in.engine, dest_id)["filters"]] == \
        ["drop_properties", "drop"]
    signed_in.post(url + "/filters/0", data={"csrf_token": signed_in.csrf, "delete": "1"})
    assert workspace.get_destination(signed_in.engine, dest_id)["filters"] == [{"if": 'event = "Spam"', "action": "drop"}]
    actions = [e["action"] for e in governance.list_entries(signed_in.engine)]
    assert actions[:4] == ["filters.deleted", "filters.reordered", "filters.added", "filters.added"]
    assert governance.list_entries(signed_in.engine)[0]["actor"] == "admin"


def test_history_replay_from_the_destination_page(signed_in):
    dest_id = _hook(signed_in)
    since = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    done = signed_in.post(f"/destinations/{dest_id}/history-replay", data={
        "csrf_token": signed_in.csrf, "since": since}, follow_redirects=False)
    assert done.status_code == 303
    page = signed_in.get(f"/destinations/{dest_id}", headers=HTML).text
    assert "Replay 1: queued 0 stored events" in page and 'id="replays"' in page
    bad = signed_in.post(f"/destinations/{dest_id}/history-replay", data={"csrf_token": signed_in.csrf, "since": "soon"})
    assert "Not replayed:" in bad.text
    assert governance.list_entries(signed_in.engine)[0]["action"] == "replay.history"


def test_debugger_routed_to_names_the_filter_and_the_suppression(signed_in):
    dest_id = _hook(signed_in)
    workspace.set_filters(signed_in.engine, dest_id, [
        {"if": 'event = "Spam"', "action": "drop"},
        {"if": "true", "action": "drop_properties", "fields": ["properties.email"]}])
    _track(signed_in, "Spam", userId="u-1")
    _track(signed_in, "Bought", userId="u-2", properties={"email": "x@y.z"})
    with signed_in.engine.begin() as conn:
        conn.execute(suppressions.insert().values(user_key=user_key("u-2"), user_id="u-2", source_id=0, regulation_id=7,
                                                  created_at=datetime.now(timezone.utc)))
    rows = {e["name"]: e["id"] for e in signed_in.get("/sources/1/debugger?format=json").json()["events"]}

    def routed(name):
        detail = signed_in.get(f"/sources/1/debugger/events/{rows[name]}").json()
        return next(d for d in detail["routed_to"] if d["id"] == dest_id)

    spam = routed("Spam")
    assert spam["routed"] is False and spam["reason"] == 'dropped by filter 1 (event = "Spam")'
    bought = routed("Bought")
    assert bought["routed"] is True and "filter 2 (true) removed properties.email" in bought["reason"]
    assert "userId is suppressed (regulation 7" in bought["reason"]
    assert "suppressed" not in spam["reason"]
    with signed_in.engine.connect() as conn:
        assert conn.execute(select(suppressions.c.user_id)).scalars().all() == ["u-2"]


def test_a_move_or_delete_made_on_a_list_that_changed_meanwhile_changes_nothing(signed_in, monkeypatch):
    from server.web import views_filters
    dest_id = _hook(signed_in)
    first, second = {"if": 'event = "A"', "action": "drop"}, {"if": 'event = "B"', "action": "drop"}
    workspace.set_filters(signed_in.engine, dest_id, [first, second])
    real = views_filters.filter_service.set_filters

    def someone_else_first(*args, **kwargs):  # another tab deletes "A" just before this write
        workspace.set_filters(signed_in.engine, dest_id, [second])
        return real(*args, **kwargs)

    monkeypatch.setattr(views_filters.filter_service, "set_filters", someone_else_first)
    moved = signed_in.post(f"/destinations/{dest_id}/filters/0", data={"csrf_token": signed_in.csrf, "move": "down"},
                           follow_redirects=False)
    assert moved.status_code == 303
    assert workspace.get_destination(signed_in.engine, dest_id)["filters"] == [second]  # "A" did not come back
    page = signed_in.get(moved.headers["location"], headers=HTML).text
    assert "The filters changed meanwhile; nothing was moved." in page


def test_settings_saved_for_a_destination_deleted_meanwhile_get_the_not_found_page(signed_in, monkeypatch):
    from server.api import service
    dest_id = _hook(signed_in)
    real = service.merge_settings

    def deleted_first(*args, **kwargs):
        workspace.delete_destination(signed_in.engine, dest_id)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "merge_settings", deleted_first)
    saved = signed_in.post(f"/destinations/{dest_id}/settings", headers=HTML, data={
        "csrf_token": signed_in.csrf, "url": "https://example.com/other"})
    assert saved.status_code == 404 and f"There is no destination {dest_id}." in saved.text
