"""Alerts end to end in real Chromium against a real ``switchboard serve`` (delivery workers and
the alert evaluator in process, every 0.5 s): a webhook vendor on 127.0.0.1 starts failing (500),
the rule made in the web app fires once to a second webhook destination (the "alert receiver"),
the vendor recovers, the rule resolves once, and the rule's page shows both in its history.
The screenshot goes to test-artifacts/screenshots/alerts.png (docs/screenshots/ keeps a copy).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from delivery_vendor import Vendor  # tests/ is on sys.path (e2e/conftest.py)
from playwright.sync_api import Page, expect

from conftest import LiveServer  # noqa: E402  (e2e/conftest re-exports it)
from server.store import open_store, tokens

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "screenshots"
PASSWORD = "e2e-alerts-password-1"


class Switch:
    """The vendor's mood: 500 while failing, 200 otherwise."""

    def __init__(self):
        self.failing = False

    def __call__(self, record):
        return (500, {}, b"vendor down") if self.failing else (200, {}, b"ok")


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    env = {"SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([sys.executable, "-m", "server.cli", "init"], env={**os.environ, **env},
                   cwd=ROOT, capture_output=True, text=True, check=True)
    engine = open_store(url)
    token = tokens.create_token(engine, "e2e")
    engine.dispose()
    mood = Switch()
    with Vendor(mood) as vendor, Vendor() as receiver:
        live = LiveServer(url, SWITCHBOARD_ADMIN_PASSWORD=PASSWORD, SWITCHBOARD_ALERT_INTERVAL_S="0.5",
                          SWITCHBOARD_ALLOW_PRIVATE_EGRESS="true").start()
        try:
            yield live, token, mood, vendor, receiver
        finally:
            live.stop()


def _events(base: str, write_key: str, stop: threading.Event) -> None:
    """Live traffic: a track call every 0.2 s until stopped."""
    with httpx.Client(base_url=base, timeout=5) as client:
        n = 0
        while not stop.is_set():
            n += 1
            client.post("/v1/track", json={"writeKey": write_key, "event": "Tick", "userId": "u", "messageId": f"t{n}"})
            stop.wait(0.2)


def _states(receiver: Vendor) -> list[str]:
    return [r.json()["properties"]["state"] for r in receiver.snapshot()]


def test_an_alert_fires_once_when_the_vendor_fails_and_resolves_once_when_it_recovers(setup, page: Page):
    live, token, mood, vendor, receiver = setup
    api = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    source = api.post("/api/v1/sources", json={"name": "Shop"}).json()
    watched = api.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "webhooks", "mode": "cloud", "enabled": True, "label": "Vendor hook",
        "settings": {"url": vendor.url + "/hook"}}).json()
    channel = api.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "webhooks", "mode": "cloud", "enabled": False, "label": "Alert receiver",
        "settings": {"url": receiver.url + "/alerts"}}).json()
    assert "id" in watched and "id" in channel, (watched, channel)

    # The rule, made in the web app.
    page.goto(live.url + "/alerts")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(live.url + "/alerts")
    form = page.locator("#new-alert")
    form.get_by_label("Name").fill("Vendor failing")
    form.get_by_label("When").select_option("failure_rate")
    form.get_by_label("Destination watched").select_option(str(watched["id"]))
    form.get_by_label("Threshold").fill("50")
    form.get_by_label("Window in minutes").fill("0.1")  # 6 s, so the test recovers quickly
    form.get_by_label("Notify through").select_option(str(channel["id"]))
    form.get_by_role("button", name="Create rule").click()
    expect(page.get_by_text("Created alert rule “Vendor failing”.")).to_be_visible()
    rule_url = page.url
    assert re.search(r"/alerts/\d+$", rule_url)

    stop = threading.Event()
    sender = threading.Thread(target=_events, args=(live.url, source["write_key"], stop), daemon=True)
    sender.start()
    try:
        vendor.wait_for(3, timeout=30)  # delivering while healthy: nothing fires
        time.sleep(1.5)
        assert _states(receiver) == []
        mood.failing = True
        receiver.wait_for(1, timeout=60)
        time.sleep(2)  # several more passes while still failing: still one notification
        assert _states(receiver) == ["firing"]
        page.goto(live.url + "/alerts")
        expect(page.locator('#alert-rules [data-state="firing"]')).to_have_count(1)
        mood.failing = False
        receiver.wait_for(2, timeout=90)
        time.sleep(2)
        assert _states(receiver) == ["firing", "resolved"]
    finally:
        stop.set()
        sender.join(10)
    firing = receiver.snapshot()[0].json()
    assert firing["event"] == "Switchboard Alert" and firing["properties"]["rule"]["name"] == "Vendor failing"

    page.goto(rule_url)
    rows = page.locator("#alert-history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("resolved")
    expect(rows.nth(1)).to_contain_text("firing")
    expect(rows.nth(1)).to_contain_text("sent")
    page.goto(live.url + "/alerts")
    expect(page.locator('#alert-rules [data-state="ok"]')).to_have_count(1)
    page.goto(rule_url)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)
