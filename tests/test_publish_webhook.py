"""The publish webhook (server/cdn/publish_webhook.py), against a real HTTP receiver on 127.0.0.1:
it gets the changed keys and URL paths, signed; failures are retried (5xx, connection errors) but
not 4xx; a hanging receiver never delays the next publish; internal URLs are refused at config
load unless SWITCHBOARD_ALLOW_PRIVATE_EGRESS is on (checked without connecting anywhere)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import sys
import threading
from datetime import datetime, timezone

import pytest
from delivery_vendor import Recorded, Vendor, ok
from starlette.testclient import TestClient

from server.app import create_app
from server.cdn.publish_webhook import PublishWebhook
from server.config import Config, ConfigError
from server.store import open_store, workspace
from tests.test_publish import PLANES, wait_for

SECRET = "purge-signing-secret"


def verified(record: Recorded) -> bool:
    """What a receiver does (docs/deployment.md): HMAC-SHA256 of the raw body, compared in constant time."""
    expected = "sha256=" + hmac.new(SECRET.encode(), record.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(record.headers.get("x-switchboard-signature", ""), expected)


def start(db_url, tmp_path, webhook_url: str, **options):
    engine = open_store(db_url)
    source = workspace.create_source(engine, "Shop")
    dest = workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                     settings={"measurement_id": "G-FIRST1"})
    config = Config(database_url=db_url, delivery_workers=False, publish_dir=str(tmp_path / "www"),
                    publish_webhook=webhook_url, publish_webhook_secret=SECRET, allow_private_egress=True, **options)
    return engine, source, dest, create_app(config, engine=engine, planes=PLANES)


def bundle_hash(client, key: str) -> str:
    return client.get(f"/analytics.js/v1/{key}/analytics.min.js").headers["etag"].strip('"').split("-")[0]


def test_a_change_posts_the_changed_keys_and_paths_signed_and_the_command_runs_too(db_url, tmp_path):
    marker = tmp_path / "hook.log"
    command = f"{sys.executable} -c \"import sys; open({str(marker)!r},'a').write(' '.join(sys.argv[1:]) + chr(10))\""
    with Vendor() as vendor:
        engine, source, dest, app = start(db_url, tmp_path, vendor.url + "/purge?token=t1", publish_command=command)
        key = source["write_key"]
        with TestClient(app) as client:
            first = vendor.wait_for(1, 5)[0]  # the start-up publish
            assert (first.method, first.path, first.query) == ("POST", "/purge", {"token": "t1"})
            assert first.headers["content-type"] == "application/json"
            assert first.headers["user-agent"] == "switchboard-publish"
            assert verified(first)
            digest = bundle_hash(client, key)
            paths = [f"/analytics.js/v1/{key}/analytics.min.js", f"/analytics.js/v1/{key}/analytics.{digest}.min.js",
                     f"/v1/projects/{key}/settings", f"/snippet/{key}.js"]
            assert first.json()["keys"] == [key]
            assert sorted(first.json()["paths"]) == sorted(paths)

            workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-SECOND"})
            second = vendor.wait_for(2, 5)[1]
            new_digest = bundle_hash(client, key)
            assert new_digest != digest
            body = second.json()
            assert body["keys"] == [key]
            assert f"/analytics.js/v1/{key}/analytics.{new_digest}.min.js" in body["paths"]
            assert {f"/analytics.js/v1/{key}/analytics.min.js", f"/v1/projects/{key}/settings"} <= set(body["paths"])
            published = datetime.fromisoformat(body["published_at"].replace("Z", "+00:00"))
            assert abs((datetime.now(timezone.utc) - published).total_seconds()) < 60
            assert verified(second)
            tampered = Recorded(second.method, second.path, second.query, second.headers, second.body + b" ")
            assert not verified(tampered)  # the signature covers the body
            assert wait_for(lambda: marker.exists() and marker.read_text().splitlines().count(key) >= 2)
        engine.dispose()


def test_a_disabled_source_posts_the_removed_paths(db_url, tmp_path):
    with Vendor() as vendor:
        engine, source, _, app = start(db_url, tmp_path, vendor.url + "/purge")
        key = source["write_key"]
        with TestClient(app) as client:
            vendor.wait_for(1, 5)
            digest = bundle_hash(client, key)
            workspace.update_source(engine, source["id"], enabled=False)
            removed = vendor.wait_for(2, 5)[1].json()
            assert removed["keys"] == [key]
            assert sorted(removed["paths"]) == sorted([
                f"/analytics.js/v1/{key}/analytics.min.js", f"/analytics.js/v1/{key}/analytics.{digest}.min.js",
                f"/v1/projects/{key}/settings", f"/snippet/{key}.js"])
        engine.dispose()


def test_a_hanging_receiver_does_not_delay_the_next_publish(db_url, tmp_path):
    """The receiver holds the first call open; the next change is on disk meanwhile, and its call
    follows once the receiver answers."""
    release, holding = threading.Event(), threading.Event()

    def hang_first(record: Recorded):
        if not release.is_set() and len(vendor.snapshot()) == 1:
            holding.set()
            release.wait(30)
            holding.clear()
        return ok(record)

    vendor = Vendor(hang_first)
    with vendor:
        engine, source, dest, app = start(db_url, tmp_path, vendor.url + "/purge")
        key = source["write_key"]
        bundle = tmp_path / "www/analytics.js/v1" / key / "analytics.min.js"
        try:
            with TestClient(app):
                vendor.wait_for(1, 5)  # now hanging
                workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-WHILEHUNG"})
                assert wait_for(lambda: b"G-WHILEHUNG" in bundle.read_bytes(), 5)
                assert holding.is_set() and len(vendor.snapshot()) == 1  # written while the first call hangs
                release.set()
                second = vendor.wait_for(2, 5)[1].json()
                assert second["keys"] == [key] and f"/analytics.js/v1/{key}/analytics.min.js" in second["paths"]
        finally:
            release.set()
        engine.dispose()


def test_a_receiver_failing_twice_then_succeeding_gets_the_call():
    calls = []

    def flaky(record: Recorded):
        calls.append(record)
        return (503, {}, b"busy") if len(calls) <= 2 else ok(record)

    with Vendor(flaky) as vendor:
        hook = PublishWebhook(vendor.url + "/purge", SECRET, backoff=(0.05, 0.05, 0.05))
        try:
            hook.notify(["k1"], ["/snippet/k1.js"])
            got = vendor.wait_for(3, 5)
            assert wait_for(lambda: hook.delivered == 1)
            assert len({r.body for r in got}) == 1 and all(verified(r) for r in got)  # the same call, re-sent
            assert got[0].json()["keys"] == ["k1"] and hook.failed == 0
        finally:
            hook.close()


def test_a_4xx_is_not_retried_and_failures_are_logged_without_secrets(caplog):
    caplog.set_level(logging.WARNING, logger="switchboard.publish")
    with Vendor(lambda record: (401, {}, b"no")) as vendor:
        hook = PublishWebhook(vendor.url + "/purge?token=hidden-token", SECRET, backoff=(0.05, 0.05, 0.05))
        try:
            hook.notify(["k1"], [])
            assert wait_for(lambda: hook.failed == 1)
            assert len(vendor.snapshot()) == 1 and hook.delivered == 0
        finally:
            hook.close()
    # A refused connection (nothing listens on the port) is retried, then given up on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    hook = PublishWebhook(f"http://user:pw@127.0.0.1:{closed_port}/purge?token=hidden-token", SECRET,
                          backoff=(0.05, 0.05))
    try:
        hook.notify(["k2"], [])
        assert wait_for(lambda: hook.failed == 1)
    finally:
        hook.close()
    text = caplog.text
    assert "status 401" in text and "not retried" in text and "attempt 2" in text and "giving up" in text
    assert "hidden-token" not in text and SECRET not in text and "pw@" not in text


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/purge", "http://10.0.0.8/purge", "http://169.254.169.254/",
                                 "http://[::1]/purge", "http://localhost:8080/", "http://2130706433/"])
def test_an_internal_webhook_url_is_refused_at_config_load(url):
    """Only the configuration is checked here; nothing connects to these addresses."""
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"SWITCHBOARD_PUBLISH_WEBHOOK": url})
    assert str(caught.value).startswith("SWITCHBOARD_PUBLISH_WEBHOOK=")
    assert "SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true" in str(caught.value)
    with pytest.raises(ConfigError):
        Config(publish_webhook=url)
    allowed = Config.from_env({"SWITCHBOARD_PUBLISH_WEBHOOK": url, "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"})
    assert allowed.publish_webhook == url


@pytest.mark.parametrize("url", ["ftp://cdn.example.com/purge", "cdn.example.com/purge", "https://", "http://h:x/"])
def test_a_webhook_url_must_be_absolute_http(url):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({"SWITCHBOARD_PUBLISH_WEBHOOK": url, "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": "true"})
    assert "absolute http(s) URL" in str(caught.value)


def test_a_public_webhook_url_is_accepted_without_a_lookup():
    config = Config.from_env({"SWITCHBOARD_PUBLISH_WEBHOOK": "https://api.cdn.example/purge",
                              "SWITCHBOARD_PUBLISH_WEBHOOK_SECRET": "s"})
    assert (config.publish_webhook, config.publish_webhook_secret) == ("https://api.cdn.example/purge", "s")
    assert Config.from_env({}).publish_webhook == ""
