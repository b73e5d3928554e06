"""First event in two round trips (docs/bundle.md, "First event"), in real Chromium against a real
server and collector: the snippet sends the first page call itself while the bundle is still on
its way, the bundle does not send it again, and the event is the one the bundle would have built.
When anything could change the event (consent categories, queued middleware or consent calls, load
options, a privacy signal), nothing leaves before the bundle.

Every test holds the bundle's response until it has looked at what the page sent without it.
"""

from __future__ import annotations

import json
import re

import pytest
from loader_site import site_fixture
from snippet_earlier import render_earlier
from tests_conftest import LiveServer
from vendor_stubs import SITE_PATH, LoaderSite, VendorRoutes, stored_rows

site = site_fixture("first_event", {"hotjar": {"site_id": "1234567"}})

# Keys a second event legitimately has of its own.
OWN = {"messageId", "timestamp", "sentAt", "receivedAt", "originalTimestamp", "id", "_stored_at"}


@pytest.fixture(scope="module", params=["current", "earlier"])
def changed_site(tmp_path_factory, request):
    """A third source, given consent categories by the test after its snippet was copied (in its
    current form, or as pasted in the earlier one)."""
    s = LoaderSite(tmp_path_factory.mktemp("first_event_changed"), LiveServer)
    s.form = request.param
    s.add("hotjar", {"site_id": "1234567"})
    yield s
    s.close()


@pytest.fixture(scope="module")
def consent_site(tmp_path_factory):
    """A second source whose only destination has consent categories: no early send."""
    s = LoaderSite(tmp_path_factory.mktemp("first_event_consent"), LiveServer)
    s.add("hotjar", {"site_id": "1234567", "consent_categories": ["Analytics"]})
    yield s
    s.close()


class Held:
    """A site page whose bundle request is held until ``release()``; ``posts`` are the bodies of
    the collector requests in order, ``log`` the order of posts and the release."""

    def __init__(self, browser, site: LoaderSite, edit=None, init_script: str | None = None, hold_early: bool = False,
                 timezone: str | None = None, head: str = ""):
        self.context = browser.new_context(**({"timezone_id": timezone} if timezone else {}))
        if init_script:
            self.context.add_init_script(init_script)
        VendorRoutes().install(self.context)
        self.posts: list[dict] = []
        self.log: list[str] = []
        self.held = []
        snippet = site.workspace.snippet(site.write_key)
        if edit is not None:
            edited = edit(snippet)
            assert edited != snippet, "the edit did not apply"
            snippet = edited
        html = f"<!doctype html><html><head><title>First</title>{head}<script>{snippet}</script></head><body>site</body></html>"
        page = self.page = self.context.new_page()
        base = site.workspace.url
        page.route(re.compile("^" + re.escape(base + SITE_PATH) + "/"), lambda r: r.fulfill(
            status=200, content_type="text/html", body=html))
        page.route(re.compile(r".*/analytics\.min\.js$"), lambda r: self.held.append(r))
        self.held_early: list = []  # the snippet's early posts, held when hold_early
        if hold_early:
            page.route(re.compile(r".*/v1/e$"), lambda r: self.held_early.append(r))
        page.on("request", self._seen)
        page.goto(base + SITE_PATH + "/landing?x=1", wait_until="domcontentloaded")

    def _seen(self, request) -> None:
        if request.method == "POST" and re.search(r"/v1/[a-z]$", request.url):
            body = json.loads(request.post_data or "{}")
            if request.url.endswith("/e"):  # the snippet's compact early send (server/ingest/early.py)
                ids = body[4]  # the messageId; in the earlier form (a pasted copy), {messageId, timestamp, userId}
                body = {"type": body[1], "args": body[2], "messageId": ids if isinstance(ids, str) else ids["messageId"],
                        "anonymousId": body[3]["a"], "form": "current" if isinstance(ids, str) else "earlier"}
            self.posts.append(body)
            self.log.append("post")

    def wait(self, ms: int) -> None:
        self.page.wait_for_timeout(ms)

    def release(self) -> None:
        while not self.held:
            self.wait(20)
        self.log.append("release")
        for r in self.held:
            r.continue_()
        self.page.wait_for_function("() => window.analytics && !Array.isArray(window.analytics)")

    def message_ids(self) -> list[str]:
        out = []
        for body in self.posts:
            for e in body.get("batch") or [body]:
                out.append(e.get("messageId"))
        return out

    def close(self) -> None:
        self.context.close()


def stored_pages(site: LoaderSite, n: int, page) -> list[dict]:
    rows = stored_rows(site.db_url, site.source["id"], lambda rows: sum(r["event"]["type"] == "page" for r in rows) >= n,
                       page=page)
    return [r["event"] for r in rows if r["event"]["type"] == "page"]


def earlier(snippet: str) -> str:
    """The same site's snippet as pasted in its earlier form (tests/snippet_earlier.py): pasted
    copies keep running for years."""
    origin = re.search(r'a\._cdn=("[^"]*")', snippet).group(1)
    key = re.search(r'analytics\.load\(("[^"]*")\)', snippet).group(1)
    return render_earlier(json.loads(origin), json.loads(key), "/v1")


# The page's canonical link as written, and the page the early event and a later one both name.
CANONICAL = '<link rel="canonical" href="shop/1">'


# A visitor the site identified on an earlier page (its ajs_user_id cookie).
IDENTIFIED = 'document.cookie = "ajs_user_id=u-42; path=/";'


@pytest.mark.parametrize("form", ["current", "earlier", "canonical", "identified", "identified-earlier"])
def test_snippet_sends_the_first_page_once_with_the_bundles_context(site, browser, form):
    h = Held(browser, site, edit=earlier if form.endswith("earlier") else None, head=CANONICAL if form == "canonical" else "",
             init_script=IDENTIFIED if form.startswith("identified") else None)
    try:
        h.wait(500)
        # The page call left while the bundle was still held: request #2 after the HTML.
        assert h.log == ["post"] and h.posts[0]["type"] == "page", h.log
        assert h.posts[0]["form"] == ("earlier" if form.endswith("earlier") else "current")
        early = h.posts[0]
        first_id = early["messageId"]
        h.release()
        # The bundle replays the call (hotjar gets it) without posting it again; a page call made
        # through the bundle is built by the bundle itself.
        h.page.evaluate("() => analytics.ready()")
        h.page.evaluate("() => analytics.page()")
        events = stored_pages(site, 2, h.page)
        h.wait(300)
        assert h.message_ids().count(first_id) == 1, h.message_ids()
        stored = [e for e in stored_pages(site, 2, h.page) if e["messageId"] == first_id]
        assert len(stored) == 1
        later = [e for e in events if e["messageId"] != first_id][0]
        first = stored[0]
        assert set(first) == set(later)
        assert set(first["context"]) == set(later["context"])
        for key in set(first) - OWN:
            assert first[key] == later[key], key
        # The visitor's id is the one the bundle keeps (cookie and localStorage).
        stored_id = h.page.evaluate("() => analytics.user().anonymousId()")
        assert first["anonymousId"] == stored_id
        assert "ajs_anonymous_id=" + stored_id in h.page.evaluate("() => document.cookie")
        assert first["integrations"] == {"Hotjar": False} and first["_metadata"]["bundled"] == ["Hotjar"]
        assert first["userId"] == ("u-42" if form.startswith("identified") else None)
        if form == "canonical":
            page = first["context"]["page"]
            assert page["path"] == SITE_PATH + "/shop/1" and page["url"].endswith(SITE_PATH + "/shop/1?x=1"), page
    finally:
        h.close()


def test_a_track_queued_before_the_bundle_leaves_early_too_and_once(site, browser):
    h = Held(browser, site, edit=lambda s: s.replace("analytics.page();", 'analytics.page(); analytics.track("Early", {n: 1});'))
    try:
        h.wait(500)
        assert [p["type"] for p in h.posts] == ["page", "track"] and h.posts[1]["args"] == ["Early", {"n": 1}]
        h.release()
        h.page.evaluate("() => analytics.track('After')")
        rows = stored_rows(site.db_url, site.source["id"], lambda rows: any(r["event"].get("event") == "After" for r in rows),
                           page=h.page)
        h.wait(300)
        early = [r["event"] for r in rows if r["event"].get("event") == "Early"]
        assert len(early) == 1 and h.message_ids().count(early[0]["messageId"]) == 1
    finally:
        h.close()


NO_EARLY = {
    "addSourceMiddleware": lambda s: s.replace("analytics.page();", "analytics.addSourceMiddleware(function (o) { o.next(o.payload); }); analytics.page();"),
    "setConsent": lambda s: s.replace("analytics.page();", "analytics.setConsent({Analytics: true}); analytics.page();"),
    "register": lambda s: s.replace("analytics.page();", "analytics.register({name: 'p', type: 'enrichment', version: '1', "
                                    "isLoaded: function () { return true; }, load: function () {}}); analytics.page();"),
    "identify": lambda s: s.replace("analytics.page();", "analytics.identify('u1'); analytics.page();"),
    "load options": lambda s: re.sub(r"analytics\.load\(([^)]*)\);", r"analytics.load(\1, {integrations: {Hotjar: false}});", s),
}


@pytest.mark.parametrize("case", sorted(NO_EARLY))
def test_calls_that_could_change_the_event_make_it_wait_for_the_bundle(site, browser, case):
    h = Held(browser, site, edit=NO_EARLY[case])
    try:
        h.wait(500)
        assert h.posts == [], f"{case}: sent before the bundle"
        h.release()
        h.page.wait_for_function("() => true")
        h.wait(100)
        stored_rows(site.db_url, site.source["id"], lambda rows: bool(rows), page=h.page)
        while "post" not in h.log:
            h.wait(50)
        assert h.log.index("release") < h.log.index("post")
    finally:
        h.close()


PRIVACY = {
    "Global Privacy Control": "Object.defineProperty(Navigator.prototype, 'globalPrivacyControl', {get: () => true});",
    "stored consent preferences": "localStorage.setItem('sb_consent', JSON.stringify({Analytics: false}));",
}


@pytest.mark.parametrize("case", sorted(PRIVACY))
def test_a_privacy_signal_is_never_bypassed(site, browser, case):
    h = Held(browser, site, init_script=PRIVACY[case])
    try:
        h.wait(500)
        assert h.posts == [], f"{case}: sent before the bundle"
        h.release()
    finally:
        h.close()


def test_a_source_with_consent_categories_waits_for_the_bundle(consent_site, browser):
    snippet = consent_site.workspace.snippet(consent_site.write_key)
    assert "E=null" in snippet
    h = Held(browser, consent_site)
    try:
        h.wait(500)
        assert h.posts == []
        h.release()
        pages = stored_pages(consent_site, 1, h.page)
        assert pages[0]["context"]["consent"]["categoryPreferences"] == {"Analytics": False}
    finally:
        h.close()


def test_a_set_anonymous_id_queued_after_the_early_page_wins(site, browser):
    """The bundle runs a queued setAnonymousId before replaying the page the snippet sent: the
    sent event keeps the id it left with, and the visitor keeps the id the page asked for."""
    h = Held(browser, site, edit=lambda s: s.replace("analytics.page();", "analytics.page(); analytics.setAnonymousId('fixed-id');"))
    try:
        h.wait(500)
        assert [p["type"] for p in h.posts] == ["page"]
        sent_id = h.posts[0]["anonymousId"]
        h.release()
        h.page.evaluate("() => analytics.ready()")
        assert sent_id != "fixed-id"
        assert h.page.evaluate("() => analytics.user().anonymousId()") == "fixed-id"
    finally:
        h.close()


def test_a_copied_snippet_refused_after_the_bundle_replayed_its_call_is_sent_by_the_bundle(changed_site, browser):
    """A snippet copied before the source had consent categories still sends early; the collector
    refuses it now (409). When that answer comes after the bundle has replayed the call, the
    bundle sends the event itself: stored once, with the consent context, nothing lost."""
    copied = changed_site.workspace.snippet(changed_site.write_key)
    assert 'E="/v1/e"' in copied
    if changed_site.form == "earlier":
        copied = earlier(copied)
    hotjar = changed_site.destinations["hotjar"]
    changed_site.workspace.update(hotjar["id"], {"site_id": "1234567", "consent_categories": ["Analytics"]})
    assert "E=null" in changed_site.workspace.snippet(changed_site.write_key)
    h = Held(browser, changed_site, edit=lambda _: copied, hold_early=True)
    try:
        h.wait(300)
        assert [p["type"] for p in h.posts] == ["page"]  # left early, its answer held
        early_id = h.posts[0]["messageId"]
        h.release()
        h.page.evaluate("() => analytics.ready()")
        h.wait(300)
        assert h.message_ids() == [early_id]  # the bundle took the call as sent
        for r in h.held_early:
            r.continue_()  # the collector answers 409 early_send_refused
        pages = stored_pages(changed_site, 1, h.page)
        assert [p["messageId"] for p in pages] == [early_id]
        assert pages[0]["context"]["consent"]["categoryPreferences"] == {"Analytics": False}
        h.wait(300)
        assert h.message_ids() == [early_id, early_id]  # the refused early post, then the bundle's
    finally:
        h.close()


# Counts the page's calls to Intl.DateTimeFormat (Chromium's first one costs 10-20 ms).
COUNT_INTL = """window.__intl = 0; (function (F) {
  Intl.DateTimeFormat = function () { window.__intl++; return F.apply(this, arguments); };
})(Intl.DateTimeFormat);"""


@pytest.mark.parametrize("temporal", [True, False], ids=["temporal", "intl-only"])
def test_snippet_and_bundle_take_the_visitors_time_zone_from_the_same_place(site, browser, temporal):
    """Where the browser has Temporal, neither the snippet nor the bundle calls Intl for the time
    zone; where it doesn't, both fall back to Intl. Either way the early page and a later one carry
    the visitor's zone."""
    script = COUNT_INTL + ("" if temporal else "delete window.Temporal;")
    h = Held(browser, site, init_script=script, timezone="Pacific/Auckland")
    try:
        assert h.page.evaluate("() => typeof Temporal") == ("object" if temporal else "undefined")
        h.wait(300)
        assert [p["type"] for p in h.posts] == ["page"]
        first_id = h.posts[0]["messageId"]
        h.release()
        h.page.evaluate("() => analytics.page()")
        visitor = h.posts[0]["anonymousId"]
        rows = stored_rows(site.db_url, site.source["id"], lambda rows: sum(
            r["event"]["type"] == "page" and r["event"]["anonymousId"] == visitor for r in rows) >= 2, page=h.page)
        pages = [r["event"] for r in rows if r["event"]["type"] == "page" and r["event"]["anonymousId"] == visitor]
        assert sorted(e["messageId"] == first_id for e in pages) == [False, True]
        assert [e["context"]["timezone"] for e in pages] == ["Pacific/Auckland"] * 2
        intl = h.page.evaluate("() => window.__intl")
        assert (intl == 0) if temporal else (intl >= 2), intl
    finally:
        h.close()
