"""Sign-in throttling against a real ``switchboard serve`` behind a (simulated) proxy of ours:
``SWITCHBOARD_TRUST_PROXY=true``, and every request carries the ``X-Forwarded-For`` our proxy
would send: whatever the client wrote, then the address the proxy saw, appended last.

A spoofed header neither buys fresh attempts nor spends the real admin's; fresh user names are
throttled per address; 60 racing attempts get no more password checks than the limit; a burst
from many addresses gets a bounded number of scrypt checks at once. (No packet goes anywhere but
127.0.0.1: the addresses below only ever appear inside headers.)
"""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from edge_live import admin_server
from server.api.client_address import client_address, forwarded_for
from server.web import throttle

PASSWORD = "throttle-test-password-1"
ATTACKER = "203.0.113.7"  # what our proxy saw of the attacker
ADMIN = "198.51.100.20"  # what it saw of the real admin


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = admin_server(tmp_path_factory.mktemp("throttle"), PASSWORD, SWITCHBOARD_TRUST_PROXY="true")
    yield live
    live.stop()
    assert "Traceback" not in live.output(), live.output()


def browser(server) -> tuple[httpx.Client, str]:
    """A client with a session cookie and its CSRF token, as the sign-in page hands them out."""
    client = httpx.Client(base_url=server.url, timeout=30)
    page = client.get("/sign-in")
    return client, re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def attempt(client: httpx.Client, token: str, seen_by_proxy: str, *, user: str = "admin",
            password: str = "wrong", written_by_client: str = "") -> httpx.Response:
    forwarded = f"{written_by_client}, {seen_by_proxy}" if written_by_client else seen_by_proxy
    return client.post("/sign-in", data={"csrf_token": token, "username": user, "password": password,
                                         "next": "/sources"},
                       headers={"X-Forwarded-For": forwarded}, follow_redirects=False)


def test_the_rule_is_the_rightmost_entry_and_only_behind_a_proxy():
    assert client_address("10.0.0.1", "1.1.1.1, 2.2.2.2", trust_proxy=True) == "2.2.2.2"
    assert client_address("10.0.0.1", "1.1.1.1, 2.2.2.2", trust_proxy=False) == "10.0.0.1"
    assert client_address("10.0.0.1", "", trust_proxy=True) == "10.0.0.1"
    # A second header written by the client doesn't come after the proxy's: headers fold in order.
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"7.7.7.7, 2.2.2.2")]
    assert client_address("10.0.0.1", forwarded_for(headers), trust_proxy=True) == "2.2.2.2"


def test_spoofed_forwarded_for_neither_bypasses_nor_locks_out_the_admin(server):
    client, token = browser(server)
    statuses = []
    for i in range(100):
        # A fresh made-up address each time, sometimes the admin's own: the proxy's entry stays last.
        spoof = ADMIN if i % 10 == 0 else f"192.0.2.{i}"
        statuses.append(attempt(client, token, ATTACKER, written_by_client=spoof).status_code)
    assert statuses[:throttle.PER_ADDRESS_ACCOUNT] == [401] * throttle.PER_ADDRESS_ACCOUNT
    assert set(statuses[throttle.PER_ADDRESS_ACCOUNT:]) == {429}
    right = attempt(client, token, ATTACKER, password=PASSWORD, written_by_client="192.0.2.250")
    assert right.status_code == 429 and right.headers["retry-after"] == "60"
    assert "Too many failed sign-ins" in right.text
    # The real admin, from their own address, is not locked out by any of it.
    admin, admin_token = browser(server)
    signed_in = attempt(admin, admin_token, ADMIN, password=PASSWORD)
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/sources"
    assert admin.get("/sources", follow_redirects=False).status_code == 200


def test_fresh_user_names_are_throttled_per_address(server):
    client, token = browser(server)
    statuses = [attempt(client, token, "203.0.113.30", user=f"guess-{i}").status_code
                for i in range(throttle.PER_ADDRESS + 5)]
    assert statuses[:throttle.PER_ADDRESS] == [401] * throttle.PER_ADDRESS
    assert set(statuses[throttle.PER_ADDRESS:]) == {429}


def _race(server, count: int, address_of, user_of) -> list[httpx.Response]:
    clients = [browser(server) for _ in range(count)]
    start = threading.Barrier(count)
    answers: list[httpx.Response | None] = [None] * count

    def run(i: int) -> None:
        client, token = clients[i]
        start.wait()
        answers[i] = attempt(client, token, address_of(i), user=user_of(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for client, _ in clients:
        client.close()
    assert all(a is not None for a in answers)
    return answers  # type: ignore[return-value]


def test_sixty_racing_wrong_sign_ins_get_no_more_password_checks_than_the_limit(server):
    answers = _race(server, 60, lambda i: "203.0.113.60", lambda i: "admin")
    statuses = [a.status_code for a in answers]
    checked = statuses.count(401)  # a 401 is an answer after a password check; a 429 had none
    assert 1 <= checked <= throttle.PER_ADDRESS_ACCOUNT, statuses
    assert statuses.count(429) == 60 - checked


def test_a_burst_from_many_addresses_gets_a_bounded_number_of_checks_at_once(server):
    # 40 addresses, 40 user names: no count limit applies, so only the scrypt slots stand between
    # the burst and the CPU. The attempts beyond the free slots are told to retry at once.
    answers = _race(server, 40, lambda i: f"198.51.100.{100 + i}", lambda i: f"someone-{i}")
    statuses = [a.status_code for a in answers]
    busy = [a for a in answers if a.status_code == 429]
    assert set(statuses) <= {401, 429} and statuses.count(401) >= 1
    assert busy, "40 simultaneous checks all ran: the scrypt slots did not bound them"
    assert all(a.headers["retry-after"] == "1" and "Too many sign-ins at once" in a.text for a in busy)


def test_guessing_one_account_from_many_addresses_is_capped_per_account(server):
    client, token = browser(server)
    addresses = [f"198.51.100.{200 + i}" for i in range(throttle.PER_ACCOUNT // throttle.PER_ADDRESS_ACCOUNT)]
    for address in addresses:  # each address stays within its own limits
        for _ in range(throttle.PER_ADDRESS_ACCOUNT):
            assert attempt(client, token, address, user="victim").status_code == 401
    fresh = "198.51.100.250"
    refused = attempt(client, token, fresh, user="victim")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    # That address itself is not throttled: it is the account that has had enough guesses.
    assert attempt(client, token, fresh, user="someone-else").status_code == 401
