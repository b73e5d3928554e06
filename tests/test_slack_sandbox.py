"""Slack templates in the bounded sandbox: bombs stop within the budgets (a clear reason, never a
frozen process), a template that is too long, does not compile or blows a budget is refused
when saved (422 invalid_template), and a bomb stored anyway (an old row) becomes a dead letter
within seconds while a real `switchboard serve` keeps answering /healthz."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from delivery_flow import jobs, source_with, wait_until
from server.destinations.slack import cloud
from server.destinations.slack.sandbox import MAX_TEMPLATE, TemplateLimitError, render
from server.store import delivery as store
from server.store import open_store

pytestmark = pytest.mark.timeout(120)

BOMB = "{{ 9**(9**9) > 1 }}"
VARIABLES = {"name": "Ann", "event": "Signed Up", "properties": {"plan": "pro", "items": [1, 2, 3]}}

BOMBS = {
    "huge power": BOMB,
    "huge repeat": "{{ 'x' * 10**10 }}",
    "huge list": "{{ [0] * 10**9 }}",
    "product of big numbers": "{% set n = 2**4000 %}{{ n * n * n }}",
    "doubling join": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling plus": "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "nested loops": "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "loops over long strings": "{% for a in 'x' * 90000 %}{% for b in 'y' * 90000 %}{% endfor %}{% endfor %}",
    "huge range": "{% for i in range(10**12) %}{% endfor %}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "percent width": "{{ '%999999999d' % 1 }}",
    "format width": "{{ '{:>999999999}'.format(1) }}",
    "replace blow-up": "{{ ('x' * 90000).replace('', 'y' * 1000) }}",
    "replace filter blow-up": "{{ ('x' * 9000) | replace('x', 'y' * 1000) }}",
    "join blow-up": "{{ range(9999) | join('x' * 1000) }}",
    "huge output": "{% for i in range(9999) %}{{ 'x' * 1000 }}{% endfor %}",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_template_bomb_stops_within_the_budget_with_a_reason(name):
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        render(BOMBS[name], VARIABLES)
    took = time.monotonic() - started
    assert took < 2.0, f"{name} ran {took:.1f}s"
    assert isinstance(raised.value, (TemplateLimitError,)) or "is unsafe" in str(raised.value), raised.value
    assert str(raised.value)


@pytest.mark.parametrize("name", ["center", "indent", "wordwrap", "format", "batch", "sum", "pprint", "urlencode"])
def test_filters_that_build_large_values_are_not_available(name):
    with pytest.raises(Exception, match=f"No filter named '{name}'"):
        render("{{ 'x' | %s(10**9) }}" % name, VARIABLES)


def test_ordinary_templates_still_work():
    assert render("{{ name }} did {{ event }} on {{ properties.plan | upper }}.", VARIABLES) == \
        "Ann did Signed Up on PRO."
    assert render("{% for i in properties['items'] %}{{ i * 2 }}{% if not loop.last %}, {% endif %}{% endfor %}",
                  VARIABLES) == "2, 4, 6"
    assert render("{{ properties.get('plan') ~ '!' }} {{ 'a,b'.split(',') | join('+') }} {{ 2 ** 10 }}",
                  VARIABLES) == "pro! a+b 1024"
    event = {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 9.5},
             "traits": {}}
    (request,) = cloud.translate(event, {"webhook_url": "https://hooks.slack.com/services/T/B/X",
                                         "templates": {"Order Completed": "{{name}}: <{{ properties.total }}>"}})
    assert request.json["text"] == "User u1: <9.5>"  # template text as is, values Slack-escaped


@pytest.mark.parametrize("template, why", [
    (BOMB, "exceeds the sandbox's limits"),
    ("{% for i in range(10**7) %}{% endfor %}", "exceeds the sandbox's limits"),
    ("{{ name ~ }}", "does not compile"),
    ("{% for x in y %}", "does not compile"),
    ("{{ x | center(3) }}", "does not compile"),
    ("x" * (MAX_TEMPLATE + 1), "is longer than"),
])
def test_a_bad_template_is_refused_when_saved(client, template, why):
    source = client.post("/api/v1/sources", json={"name": "Site"}).json()
    answer = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "slack", "enabled": True,
        "settings": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XX",
                     "templates": {"Signed Up": "{{ name }} signed up", "Order Completed": template}}})
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["code"] == "invalid_template" and body["field"] == "settings.templates"
    assert why in body["message"] and "'Order Completed'" in body["message"]


def test_good_templates_are_saved(client):
    source = client.post("/api/v1/sources", json={"name": "Site"}).json()
    answer = client.post(f"/api/v1/sources/{source['id']}/destinations", json={
        "slug": "slack", "enabled": True,
        "settings": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XX",
                     "templates": {"Order Completed": "{{ name }} spent {{ properties.revenue }} {{ missing.field }}"}}})
    assert answer.status_code == 201, answer.text


def test_a_stored_bomb_is_a_dead_letter_while_the_server_keeps_answering(live_server_factory, sqlite_url):
    engine = open_store(sqlite_url)
    # Straight into the store, as a template saved before the sandbox would be.
    source, (dest,) = source_with(engine, {"slug": "slack", "settings": {
        "webhook_url": "https://hooks.slack.com/services/T0/B0/XX", "templates": {"Bomb": BOMB}}})
    server = live_server_factory(sqlite_url)
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.get(f"{server.url}/healthz")
                    if answer.status_code != 200:
                        failures.append(f"/healthz answered {answer.status_code}")
                except httpx.HTTPError as exc:
                    failures.append(f"/healthz failed: {exc!r}")
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        posted = time.monotonic()
        answer = httpx.post(f"{server.url}/v1/track", auth=(source["write_key"], ""),
                            json={"event": "Bomb", "userId": "u1", "messageId": "bomb-1"})
        assert answer.status_code == 200
        (job,) = wait_until(lambda: [j for j in jobs(engine, dest["id"]) if j["status"] == store.DEAD],
                            timeout=20, what="the bomb's dead letter")
        took = time.monotonic() - posted
        time.sleep(0.5)  # the server keeps answering afterwards too
    finally:
        stop.set()
        prober.join(10)
    print(f"bomb dead-lettered {took:.2f}s after it was posted; /healthz max {max(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} probes")
    assert took < 5.0
    assert not failures and len(latencies) >= 5 and max(latencies) < 1.0
    assert job["status"] == store.DEAD and job["finished_at"] is not None  # not queued for a retry
    assert "could not build the request" in job["last_error"] and "too large a number" in job["last_error"]
    engine.dispose()
