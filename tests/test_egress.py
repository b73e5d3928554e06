"""Egress rules with SWITCHBOARD_ALLOW_PRIVATE_EGRESS off: internal addresses are refused when a
destination is saved (every spelling, admin API and CLI) and again at connection time after
resolution (a resolver stub stands in for DNS: no packet leaves loopback), where a refusal is a
dead letter with the reason. With the setting on, a loopback receiver works.

The rest of the suite runs with the setting on (tests/conftest.py): every receiver is on
127.0.0.1. Nothing here sends a packet anywhere but 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from test_delivery_transport import ForwardProxy
from test_web import signed_in, web  # noqa: F401 - fixtures: a signed-in web app (egress setting off)

from delivery_flow import append, jobs, source_with, wait_until
from delivery_vendor import Vendor, make_event
from server.app import create_app
from server.config import Config
from server.destinations.request import OutgoingRequest
from server.delivery.sender import DEAD, DELIVERED, Sender
from server.delivery.worker import DeliveryService
from server.store import delivery as store
from server.store import tokens

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)

# Each spelling of an internal address a URL can carry (decimal, octal, hex, short forms,
# IPv4-mapped and other IPv6 forms, brackets, trailing dot, local names, credentials in front).
INTERNAL_URLS = [
    "http://127.0.0.1:8080/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://0x7f.0.0.1/hook",
    "http://0x7f000001/hook",
    "http://017700000001/hook",
    "http://127.1/hook",
    "http://127.0.1/hook",
    "http://127.0.0.1./hook",
    "http://[::1]:8080/hook",
    "http://[0:0:0:0:0:0:0:1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[64:ff9b::a00:1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.10/hook",
    "http://100.64.0.1/hook",
    "http://[fc00::1]/hook",
    "http://[fd00:ec2::254]/hook",
    "http://[fe80::1%25eth0]/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://255.255.255.255/hook",
    "http://localhost:8000/hook",
    "http://LocalHost./hook",
    "http://api.localhost/hook",
    "https://user:secret@10.1.2.3:8443/hook",
]


def admin_client(url: str, allow: bool):
    from server.store import open_store

    engine = open_store(url)
    app = create_app(Config(database_url=url, delivery_workers=False, allow_private_egress=allow), engine=engine,
                     planes=["server.health", "server.admin"])
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {tokens.create_token(engine, 't')}"
    return client, engine


@pytest.fixture
def api(sqlite_url):
    client, engine = admin_client(sqlite_url, allow=False)
    with client:
        source = client.post("/api/v1/sources", json={"name": "Site"}).json()
        yield client, source
    engine.dispose()


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_every_spelling_of_an_internal_address_is_refused_when_saved(api, url):
    client, source = api
    answer = client.post(f"/api/v1/sources/{source['id']}/destinations",
                         json={"slug": "webhooks", "enabled": True, "settings": {"url": url}})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "private_address" and body["field"] == "settings.url"
    assert "internal address" in body["message"] and "SWITCHBOARD_ALLOW_PRIVATE_EGRESS" in body["message"]
    assert client.get(f"/api/v1/sources/{source['id']}/destinations").json()["destinations"] == []


def test_a_public_url_is_saved_and_an_update_to_an_internal_one_is_refused(api):
    client, source = api
    created = client.post(f"/api/v1/sources/{source['id']}/destinations",
                          json={"slug": "webhooks", "enabled": True,
                                "settings": {"url": "https://hooks.example.com/in"}})
    assert created.status_code == 201, created.text
    patched = client.patch(f"/api/v1/destinations/{created.json()['id']}",
                           json={"settings": {"url": "http://[::ffff:a00:1]/in"}})
    assert patched.status_code == 422 and patched.json()["code"] == "private_address"
    kept = client.get(f"/api/v1/destinations/{created.json()['id']}").json()
    assert kept["settings"]["url"] == "https://hooks.example.com/in"


def test_every_url_setting_is_checked_not_only_webhooks(api):
    client, source = api
    warehouse = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "warehouse", "enabled": True,
        "settings": {"target": "postgresql", "database_url": "postgresql://u:pw@169.254.169.254:5432/wh"}})
    assert warehouse.status_code == 422 and warehouse.json()["code"] == "private_address"
    assert "pw" not in warehouse.text  # the URL is a secret setting: only its host is named


def test_with_the_setting_on_internal_urls_are_saved(sqlite_url):
    client, engine = admin_client(sqlite_url, allow=True)
    with client:
        source = client.post("/api/v1/sources", json={"name": "Site"}).json()
        answer = client.post(f"/api/v1/sources/{source['id']}/destinations",
                             json={"slug": "webhooks", "enabled": True, "settings": {"url": "http://127.0.0.1:9/x"}})
    engine.dispose()
    assert answer.status_code == 201


def test_the_cli_refuses_an_internal_url_unless_allowed(sqlite_url):
    def cli(allow: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": sqlite_url, "SWITCHBOARD_ALLOW_PRIVATE_EGRESS": allow}
        return subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert cli("false", "sources", "create", "Site").returncode == 0
    refused = cli("false", "destinations", "add", "Site", "webhooks", "--set", "url=http://0x7f.1/in")
    assert refused.returncode != 0 and "internal address" in refused.stderr
    allowed = cli("true", "destinations", "add", "Site", "webhooks", "--set", "url=http://0x7f.1/in")
    assert allowed.returncode == 0, allowed.stderr


def test_the_web_form_refuses_an_internal_url(signed_in):  # noqa: F811 - the fixture
    from server.store import workspace

    response = signed_in.post("/catalog/webhooks/configure", headers={"accept": "text/html"}, data={
        "csrf_token": signed_in.csrf, "source": "1", "mode": "cloud", "url": "http://169.254.169.254/latest/"})
    assert response.status_code == 422
    assert "169.254.169.254 is an internal address" in response.text
    assert [d for d in workspace.list_destinations(signed_in.engine) if d["slug"] == "webhooks"] == []


# ---------------------------------------------------------------- at connection time


class StubResolver:
    """DNS as a test wants it: names map to addresses, every question is recorded."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers, self.asked = answers, []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.answers[host]


@pytest.fixture
def no_connections(monkeypatch):
    """Fail the test if anything tries to open a connection (the refusal must come first)."""
    attempts = []

    async def refuse(self, *args, **kwargs):
        attempts.append(args[1:3])
        raise AssertionError(f"a connection was attempted to {args[1:3]}")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", refuse)
    return attempts


def send(sender: Sender, url: str):
    async def main():
        try:
            return await sender.perform([OutgoingRequest("POST", url, json={"event": "Signed Up"})])
        finally:
            await sender.aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("answers", [["10.0.0.1"], ["169.254.169.254"], ["93.184.216.34", "127.0.0.1"],
                                     ["::ffff:192.168.0.1"], ["fd00::1"]])
def test_a_name_resolving_to_an_internal_address_is_refused_before_any_connection(answers, no_connections):
    resolver = StubResolver({"hooks.example.test": answers})
    outcome = send(Sender(resolver=resolver), "http://hooks.example.test/in")
    assert resolver.asked == ["hooks.example.test"] and no_connections == []
    assert outcome.outcome == DEAD
    error = outcome.last.error
    assert "egress rules" in error and "hooks.example.test resolves to" in error
    assert "SWITCHBOARD_ALLOW_PRIVATE_EGRESS" in error


def test_internal_literals_are_refused_without_a_lookup(no_connections):
    resolver = StubResolver({})
    for url in ("http://127.0.0.1:9/in", "http://2130706433/in", "http://[::ffff:7f00:1]/in", "http://localhost/in"):
        outcome = send(Sender(resolver=resolver), url)
        assert outcome.outcome == DEAD and "egress rules" in outcome.last.error, url
    assert resolver.asked == [] and no_connections == []


def test_a_name_resolving_to_loopback_becomes_a_dead_letter_with_the_reason(sqlite_url, catalog):
    """DNS rebinding: the saved name was fine, it now resolves to 127.0.0.1, where a receiver
    listens. The worker refuses it at connect time: a dead letter after one attempt, nothing
    received, not four hours of retries."""
    from server.store import open_store

    engine = open_store(sqlite_url)
    with Vendor() as vendor:
        resolver = StubResolver({"hooks.example.test": ["127.0.0.1"]})
        source, (dest,) = source_with(engine, {"slug": "webhooks",
                                               "settings": {"url": f"http://hooks.example.test:{vendor.port}/in"}})
        append(engine, source["id"], [make_event("track", event="Rebound")])

        async def run():
            sender = Sender(resolver=resolver)
            service = await DeliveryService(engine, catalog, sender=sender, poll_interval=0.02).start()
            try:
                await asyncio.get_running_loop().run_in_executor(None, lambda: wait_until(
                    lambda: [j for j in jobs(engine, dest["id"]) if j["status"] == store.DEAD], timeout=20,
                    what="the dead letter"))
            finally:
                await service.stop()
                await sender.aclose()

        asyncio.run(run())
        assert vendor.snapshot() == []
    (job,) = jobs(engine, dest["id"])
    assert job["status"] == store.DEAD and job["attempts"] == 1
    assert "hooks.example.test resolves to 127.0.0.1" in job["last_error"] and "loopback" in job["last_error"]
    assert resolver.asked == ["hooks.example.test"]
    engine.dispose()


def test_with_the_setting_on_a_loopback_receiver_gets_the_event():
    with Vendor() as vendor:
        outcome = send(Sender(allow_private_egress=True), f"{vendor.url}/in")
        assert outcome.outcome == DELIVERED and len(vendor.snapshot()) == 1


class NamingProxy(ForwardProxy):
    """A forward proxy that resolves one test name to its loopback target itself."""

    def __init__(self, name: str, port: int):
        super().__init__()
        self.name, self.target_port = name, port

    async def _open(self, host: str, port: int):
        assert host == self.name, f"the proxy was asked for {host}"
        return await super()._open("127.0.0.1", self.target_port)


def test_the_proxy_is_the_operators_choice_but_internal_targets_through_it_are_refused():
    async def main():
        with Vendor() as vendor:
            async with NamingProxy("vendor.example.test", vendor.port) as proxy:
                sender = Sender(proxies={"http": proxy.url()})  # a proxy on 127.0.0.1: allowed
                try:
                    ok = await sender.perform([OutgoingRequest("POST", "http://vendor.example.test/in", json={})])
                    refused = await sender.perform([OutgoingRequest("POST", "http://10.0.0.1/in", json={})])
                finally:
                    await sender.aclose()
                return ok, refused, proxy.heads, vendor.snapshot()

    ok, refused, heads, received = asyncio.run(main())
    assert ok.outcome == DELIVERED and len(received) == 1
    assert refused.outcome == DEAD and "10.0.0.1 is an internal address" in refused.last.error
    assert len(heads) == 1  # the refused request never reached the proxy


def test_the_event_tester_obeys_the_rules(catalog):
    from server.web import tester

    with Vendor() as vendor:
        destination = {"settings": {"url": f"{vendor.url}/in"}}
        manifest = catalog.get("webhooks")
        refused = asyncio.run(tester.send_sample(manifest, destination, "track"))
        assert refused["outcome"] == DEAD and "egress rules" in refused["exchanges"][0]["error"]
        assert vendor.snapshot() == []
        allowed = asyncio.run(tester.send_sample(manifest, destination, "track", allow_private_egress=True))
        assert allowed["outcome"] == DELIVERED and len(vendor.snapshot()) == 1


def test_a_resolver_failure_is_retried_not_refused():
    async def fail(host: str, port: int):
        raise OSError("Name or service not known")

    outcome = send(Sender(resolver=fail), "http://nowhere.example.test/in")
    assert outcome.outcome == "retry" and "could not resolve nowhere.example.test" in outcome.last.error
