"""The Sender's egress proxies, read from the environment as curl, requests and httpx read it:
one proxy per target scheme, ALL_PROXY as the fallback, NO_PROXY exemptions, and what a failing
proxy leaves in the attempt record. Real target servers and a real forward proxy on 127.0.0.1
(both from the transport's tests)."""

from __future__ import annotations

import asyncio
import socket
import ssl

import httpx
import orjson
import pytest
import trustme
from test_delivery_transport import ForwardProxy, Server, keep_alive

from server.destinations.request import OutgoingRequest, basic_auth
from server.delivery.sender import DELIVERED, RETRY, Sender
from server.delivery.transport import HTTP11Transport

pytestmark = pytest.mark.timeout(30)

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    """Each test starts from an environment without proxies, whatever the machine running it has."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def tls(tmp_path, monkeypatch) -> ssl.SSLContext:
    """A server context for 127.0.0.1 whose CA the sender trusts through SSL_CERT_FILE."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nobody listens on it once closed


async def perform(sender: Sender, *urls: str):
    try:
        return await sender.perform([OutgoingRequest("POST", url, json={"event": "Signed Up"}) for url in urls])
    finally:
        await sender.aclose()


def test_env_chooses_the_proxy_by_target_scheme(tls, monkeypatch):
    async def main():
        async with ForwardProxy() as plain_proxy, ForwardProxy() as tunnel_proxy, \
                Server(keep_alive()) as plain, Server(keep_alive(), ssl_context=tls) as secure:
            monkeypatch.setenv("HTTP_PROXY", plain_proxy.url())
            monkeypatch.setenv("HTTPS_PROXY", tunnel_proxy.url())
            outcome = await perform(Sender(allow_private_egress=True), f"{plain.url}/hook", f"{secure.url}/v1/track")
            assert outcome.outcome == DELIVERED
            lines = [head.split(b"\r\n")[0].decode() for head in plain_proxy.heads + tunnel_proxy.heads]
            assert lines == [f"POST {plain.url}/hook HTTP/1.1", f"CONNECT 127.0.0.1:{secure.port} HTTP/1.1"]
            assert len(plain_proxy.heads) == 1
            assert len(plain.requests) == 1 and len(secure.requests) == 1

    asyncio.run(main())


def test_all_proxy_is_the_fallback_and_lower_case_names_win(tls, monkeypatch):
    async def main():
        async with ForwardProxy() as proxy, Server(keep_alive()) as plain, \
                Server(keep_alive(), ssl_context=tls) as secure:
            monkeypatch.setenv("ALL_PROXY", proxy.url())
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead_port()}")
            monkeypatch.setenv("https_proxy", proxy.url())  # lower case first, as urllib and curl
            outcome = await perform(Sender(allow_private_egress=True), plain.url, secure.url)
            assert outcome.outcome == DELIVERED
            assert proxy.connections == 2 and proxy.heads[1].startswith(b"CONNECT ")

    asyncio.run(main())


@pytest.mark.parametrize("no_proxy, bypassed", [
    (None, False),  # loopback is not exempt unless listed
    ("vendor.example, 127.0.0.1", True),
    ("127.0.0.1:{port}", True),
    ("127.0.0.1:1", False),  # another port of the same host
    ("*", True),
])
def test_no_proxy_exempts_listed_hosts(no_proxy, bypassed, monkeypatch):
    async def main():
        async with ForwardProxy() as proxy, Server(keep_alive()) as target:
            monkeypatch.setenv("HTTP_PROXY", proxy.url())
            if no_proxy is not None:
                monkeypatch.setenv("NO_PROXY", no_proxy.format(port=target.port))
            sender = Sender(allow_private_egress=True)
            monkeypatch.delenv("NO_PROXY", raising=False)  # read once, when the sender is made
            outcome = await perform(sender, target.url, target.url)
            assert outcome.outcome == DELIVERED and len(target.requests) == 2
            assert proxy.connections == (0 if bypassed else 1)

    asyncio.run(main())


def test_no_proxy_rules_for_domains():
    sender = Sender(proxies={"https": "http://proxy.corp.example:3128", "http": "proxy.corp.example:3128",
                             "no": ".internal.example, corp.example,api.vendor.example:8443"})
    direct = sender._transport
    for url, bypassed in [
        ("https://internal.example/", True),  # a leading dot still matches the domain itself
        ("https://hooks.internal.example/x", True),
        ("https://corp.example/", True),
        ("http://deep.sub.corp.example:8080/", True),
        ("https://notcorp.example/", False),  # a suffix, not a domain
        ("https://api.vendor.example:8443/", True),
        ("https://api.vendor.example/", False),  # port 443, not the listed one
        ("https://api.mixpanel.com/track", False),
    ]:
        assert (sender._route(httpx.URL(url)) is direct) == bypassed, url
    asyncio.run(sender.aclose())


def test_one_proxy_url_for_both_schemes_is_one_transport():
    sender = Sender(proxies={"all": "http://proxy.corp.example:3128"})
    assert sender._proxy_for["http"] is sender._proxy_for["https"]
    asyncio.run(sender.aclose())


def test_a_failing_proxy_is_a_retry_recorded_without_its_credentials(tls, monkeypatch):
    async def main():
        async with ForwardProxy(credentials=("alice", "right-pass")) as proxy, \
                Server(keep_alive(), ssl_context=tls) as secure:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url("alice", "wrong-pass-5c1b"))
            request = OutgoingRequest("POST", f"{secure.url}/v1", json={"a": 1},
                                      headers={"Authorization": basic_auth("vendor-key-123", "")},
                                      secrets=("vendor-key-123",))
            sender = Sender(allow_private_egress=True)
            try:
                outcome = await sender.perform([request])
            finally:
                await sender.aclose()
            assert outcome.outcome == RETRY
            attempt = outcome.last
            assert "ProxyError" in attempt.error and "407" in attempt.error
            assert f"127.0.0.1:{proxy.port}" in attempt.error
            stored = orjson.dumps(attempt.row()).decode()
            assert "wrong-pass-5c1b" not in stored and "alice" not in stored and "vendor-key-123" not in stored
            assert list(attempt.request["headers"]) == ["Authorization"]  # what the translator asked for
            assert secure.connections == 0

    asyncio.run(main())


def test_proxy_down_is_a_retry_naming_the_proxy(monkeypatch):
    port = dead_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://bob:pw-77aa@127.0.0.1:{port}")
    outcome = asyncio.run(perform(Sender(allow_private_egress=True), "http://vendor.invalid/hook"))
    assert outcome.outcome == RETRY
    assert f"ConnectError: could not connect to the proxy 127.0.0.1:{port}" in outcome.last.error
    assert "pw-77aa" not in outcome.last.error


def test_without_proxy_variables_or_with_trust_env_off_requests_go_direct(monkeypatch):
    async def main():
        async with Server(keep_alive()) as target:
            plain = Sender(allow_private_egress=True)
            assert plain._routes is None  # nothing to choose: the hot path does not look
            await plain.aclose()
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead_port()}")
            for sender in (Sender(trust_env=False, allow_private_egress=True), Sender(transport=HTTP11Transport())):
                assert (await perform(sender, target.url)).outcome == DELIVERED
            assert len(target.requests) == 2

    asyncio.run(main())


def test_an_unusable_proxy_variable_fails_at_start_up_without_its_password(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "socks5://bob:pw-91ef@proxy.corp.example:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY") as refused:
        Sender(allow_private_egress=True)
    assert "pw-91ef" not in str(refused.value) and "socks5" in str(refused.value)
