"""Source management in the web app (rename, disable/enable, rotate the write key, delete with the
name typed), the event-volume overview and 7-day chart, a dead letter's own page, and the
destination page's latency chart — what a person sees through HTTP on a real database."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import insert

from server.store import delivery as store
from server.store import workspace
from server.store.delivery import delivery_attempts, delivery_jobs, utcnow, write_transaction
from server.store.events import events
from test_web import signed_in, signed_in_any, web, web_any  # noqa: F401  (fixtures)

HTML = {"accept": "text/html"}


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": client.csrf, **data}, follow_redirects=False)


def test_rename_disable_enable_and_rotate_a_source(signed_in):
    key = workspace.get_source(signed_in.engine, 1)["write_key"]
    assert _post(signed_in, "/sources/1/rename", name="Shop front").status_code == 303
    assert workspace.get_source(signed_in.engine, 1)["name"] == "Shop front"
    assert "Shop front" in signed_in.get("/sources", headers=HTML).text

    assert _post(signed_in, "/sources/1/enabled", enabled="false").status_code == 303
    assert signed_in.post("/v1/track", json={"writeKey": key, "event": "E", "anonymousId": "a"}).status_code == 403
    assert "Enable Shop front" in signed_in.get("/sources/1/settings", headers=HTML).text
    assert _post(signed_in, "/sources/1/enabled", enabled="true").status_code == 303
    assert signed_in.post("/v1/track", json={"writeKey": key, "event": "E", "anonymousId": "a"}).status_code == 200

    r = _post(signed_in, "/sources/1/rotate-key")
    assert r.status_code == 303 and r.headers["location"] == "/sources/1"
    new_key = workspace.get_source(signed_in.engine, 1)["write_key"]
    assert new_key != key and new_key in signed_in.get("/sources/1", headers=HTML).text
    assert signed_in.post("/v1/track", json={"writeKey": key, "event": "E", "anonymousId": "a"}).status_code in (401, 403, 404)
    assert signed_in.post("/v1/track", json={"writeKey": new_key, "event": "E", "anonymousId": "a"}).status_code == 200


def test_an_empty_name_is_refused_with_a_message(signed_in):
    r = _post(signed_in, "/sources/1/rename", name="")
    assert r.status_code == 303
    page = signed_in.get(r.headers["location"], headers=HTML).text
    assert "Not saved" in page and workspace.get_source(signed_in.engine, 1)["name"]


def test_delete_needs_the_name_typed(signed_in):
    name = workspace.get_source(signed_in.engine, 1)["name"]
    r = _post(signed_in, "/sources/1/delete", confirm_name="wrong")
    assert r.status_code == 303 and "Not deleted" in signed_in.get(r.headers["location"], headers=HTML).text
    assert workspace.get_source(signed_in.engine, 1)
    r = _post(signed_in, "/sources/1/delete", confirm_name=name)
    assert r.status_code == 303 and r.headers["location"] == "/sources"
    assert f"Deleted the source {name}" in signed_in.get("/sources", headers=HTML).text
    assert signed_in.get("/sources/1", headers=HTML).status_code == 404


def test_volume_chart_buckets_events_by_hour_and_type_over_7_days(signed_in_any):
    signed_in = signed_in_any  # SQLite and PostgreSQL: the hours are bucketed from each one's timestamps
    now = utcnow()
    rows = ([("track", now - timedelta(hours=2))] * 3 + [("page", now - timedelta(hours=2))] * 2
            + [("identify", now - timedelta(days=3))] + [("track", now - timedelta(days=8))])
    with write_transaction(signed_in.engine) as conn:
        conn.execute(insert(events), [{"source_id": 1, "message_id": f"vol-{i}", "type": t, "received_at": at,
                                       "payload": "{}"} for i, (t, at) in enumerate(rows)])
    data = signed_in.get("/sources/1/settings?format=json").json()["volume"]
    points = data["points"]
    assert len(points) == 168 and data["total"] == 6  # the 8-day-old event is outside the window
    two_hours_ago = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0).isoformat()
    bucket = next(p for p in points if p["hour"] == two_hours_ago)
    assert (bucket["track"], bucket["page"], bucket["total"]) == (3, 2, 5)
    assert data["types"] == ["track", "page", "identify"]
    assert data["chart"]["totals"] == {"track": 3, "page": 2, "identify": 1}
    html = signed_in.get("/sources/1/settings", headers=HTML).text
    assert len(re.findall(r'<rect class="t-', html)) == 3  # track and page stacked in one hour, identify in another
    assert "3 track, 2 page, 1 identify in the last 7 days" in html
    listing = signed_in.get("/sources?format=json").json()["sources"]
    mine = next(s for s in listing if s["id"] == 1)
    assert (mine["events_24h"], mine["events_7d"]) == (5, 6)


def _dead_letter(engine, dest_id: int) -> int:
    now = utcnow()
    with write_transaction(engine) as conn:
        event_id = conn.execute(insert(events).values(source_id=1, message_id="m-dead", type="track", received_at=now,
                                                      payload='{"event": "Order Completed"}')).inserted_primary_key[0]
        job_id = conn.execute(insert(delivery_jobs).values(
            destination_id=dest_id, source_id=1, event_id=event_id, message_id="m-dead", event_type="track",
            received_at=now, created_at=now, status=store.DEAD, attempts=1, next_attempt_at=now, finished_at=now,
            last_status=401, last_error="HTTP 401")).inserted_primary_key[0]
        conn.execute(insert(delivery_attempts).values(
            job_id=job_id, destination_id=dest_id, at=now, outcome=store.DEAD, status=401,
            error="HTTP 401", latency_ms=12.0, response='{"error": "bad token hunter2-secret"}',
            request='{"method": "POST", "url": "https://example.com/hook", "headers": {"Authorization": '
                    '"Bearer hunter2-secret"}, "body": "{}"}'))
    return job_id


def test_a_dead_letter_has_its_own_page_with_secrets_masked(signed_in):
    r = _post(signed_in, "/catalog/webhooks/configure", source="1", mode="cloud", url="https://example.com/hook",
              **{"headers.k": "Authorization", "headers.v": "Bearer hunter2-secret"})
    dest_id = int(r.headers["location"].rsplit("/", 1)[1])
    job_id = _dead_letter(signed_in.engine, dest_id)
    listing = signed_in.get(f"/destinations/{dest_id}", headers=HTML).text
    assert f'href="/destinations/{dest_id}/dead-letters/{job_id}"' in listing
    page = signed_in.get(f"/destinations/{dest_id}/dead-letters/{job_id}", headers=HTML)
    assert page.status_code == 200
    assert "HTTP 401" in page.text and "Order Completed" in page.text and "https://example.com/hook" in page.text
    assert "hunter2-secret" not in page.text and "********" in page.text
    assert "hunter2" not in signed_in.get(f"/destinations/{dest_id}/dead-letters/{job_id}?format=json").text
    assert signed_in.get(f"/destinations/{dest_id}/dead-letters/999999", headers=HTML).status_code == 404


def test_destination_page_charts_median_latency_per_hour(signed_in):
    r = _post(signed_in, "/catalog/webhooks/configure", source="1", mode="cloud", url="https://example.com/hook")
    dest_id = int(r.headers["location"].rsplit("/", 1)[1])
    now = utcnow()
    with write_transaction(signed_in.engine) as conn:
        for i, latency in enumerate((100.0, 300.0, 200.0)):
            conn.execute(insert(delivery_jobs).values(
                destination_id=dest_id, source_id=1, event_id=1000 + i, message_id=f"lat-{i}", event_type="track",
                received_at=now, created_at=now, status=store.DELIVERED, attempts=1, next_attempt_at=now,
                finished_at=now, latency_ms=latency))
    series = signed_in.get(f"/destinations/{dest_id}?format=json").json()["delivery"]["latency_series"]
    assert len(series) == 24 and series[-1]["p50"] == 200.0 and series[-1]["count"] == 3
    assert all(p["p50"] is None for p in series[:-1])
    html = signed_in.get(f"/destinations/{dest_id}", headers=HTML).text
    assert html.count('class="latency-dot"') == 1 and "200 ms" in html
