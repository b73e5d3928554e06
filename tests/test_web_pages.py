"""Rough edges of the web app's pages, as a person notices them: the warehouse page shows only
what applies to it, the diff is single-spaced, the Event Tester keeps its type, the debugger
explains its empty state and words device-mode routing truthfully, buttons declare a busy label,
and the chart helpers bucket and scale correctly."""

from __future__ import annotations

import re

from server.web import chart
from test_web import signed_in, web  # noqa: F401  (fixtures)

HTML = {"accept": "text/html"}


def test_warehouse_page_hides_the_delivery_panels(signed_in, tmp_path):
    r = signed_in.post("/catalog/warehouse/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "target": "sqlite",
        "sqlite_path": str(tmp_path / "wh.db")})
    html = signed_in.get(r.headers["location"], headers=HTML).text
    assert "Warehouse syncs" in html
    for absent in ("Delivery overview", "Dead letters", "Event Tester", "cloud-mode translator"):
        assert absent not in html, absent
    tester = signed_in.post(r.headers["location"] + "/test", data={"csrf_token": signed_in.csrf, "type": "track"})
    assert tester.status_code == 409 and tester.json()["code"] == "tester_unavailable"
    hook = signed_in.post("/catalog/webhooks/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook"})
    assert "Delivery overview" in signed_in.get(hook.headers["location"], headers=HTML).text


def test_diff_lines_are_not_followed_by_extra_newlines(signed_in):
    r = signed_in.post("/catalog/google_analytics_4/configure", follow_redirects=False, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "device", "measurement_id": "G-FIRST"})
    signed_in.post(r.headers["location"] + "/settings", data={"csrf_token": signed_in.csrf,
                                                              "measurement_id": "G-SECOND"})
    html = signed_in.get("/sources/1/history/diff?a=2&b=3", headers=HTML).text
    pre = re.search(r'<pre class="code diff">(.*?)</pre>', html, re.S).group(1)
    assert "\n" not in pre and pre.count("<span") > 3  # each line is its own block, nothing between


def test_event_tester_keeps_the_chosen_type(signed_in, monkeypatch):
    signed_in.post("/catalog/webhooks/configure", data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "https://example.com/hook"})
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.corp:1080")  # refused before any connection
    html = signed_in.post("/destinations/1/test", data={"csrf_token": signed_in.csrf, "type": "identify"}).text
    assert re.search(r'<option value="identify" selected>', html)
    assert not re.search(r'<option value="track" selected>', html)


def test_debugger_empty_state_says_what_to_do(signed_in):
    created = signed_in.post("/sources", data={"csrf_token": signed_in.csrf, "name": "Empty"}, follow_redirects=False)
    source_id = int(created.headers["location"].rsplit("/", 1)[1])
    html = signed_in.get(f"/sources/{source_id}/debugger", headers=HTML).text
    empty = re.search(r'<div id="debugger-empty"[^>]*>(.*?)</div>', html, re.S)
    assert empty and "hidden" not in empty.group(0).split(">")[0]
    assert "No events yet" in empty.group(1) and "snippet" in empty.group(1) and "curl" in empty.group(1)
    assert "/v1/track" in empty.group(1)


def test_save_buttons_declare_a_busy_label(signed_in):
    html = signed_in.get("/catalog/webhooks/configure?source=1", headers=HTML).text
    assert 'data-busy="Saving…">Save</button>' in html
    assert "document.addEventListener(\"submit\"" in signed_in.get("/static/app.js").text


def test_week_chart_labels_each_day_and_stacks_types():
    points = [{"hour": f"2026-01-0{1 + h // 24}T{h % 24:02d}:00:00+00:00", "track": 0, "page": 0} for h in range(168)]
    points[30].update(track=4, page=6)
    c = chart.week_bars(points, ["track", "page"])
    assert [lbl["text"] for lbl in c["labels"]] == [f"01-0{d}" for d in range(1, 8)]
    stacked = [r for r in c["rects"] if r["title"].startswith("01-02 06:00")]
    assert [r["series"] for r in stacked] == ["track", "page"] and c["totals"] == {"track": 4, "page": 6}
    assert [t["text"] for t in c["ticks"]] == ["0", "5", "10"]


def test_latency_line_breaks_where_no_hour_delivered():
    points = [{"hour": f"2026-01-01T{h:02d}:00:00+00:00", "p50": None} for h in range(24)]
    for h, v in ((1, 100.0), (2, 150.0), (10, 40.0), (11, 60.0)):
        points[h]["p50"] = v
    line = chart.line(points, "p50")
    assert len(line["paths"]) == 2 and len(line["dots"]) == 4 and not line["empty"]
    assert chart.line([{"hour": "2026-01-01T00:00:00+00:00", "p50": None}], "p50")["empty"]
