"""The module-scoped setup every e2e/test_loader_<slug>.py shares, built from a few arguments.

Each loader test module needs the same three things: a live server with one source and its
destinations (``site``), one page of that site with every vendor routed to its stub and the
vendor under test loaded (``page``, with ``page.routes``), and a way to get only the calls an
action adds. The factories below return those, so a test module keeps only its vendor's settings,
its readiness condition and its assertions.
"""

from __future__ import annotations

import pytest
from tests_conftest import LiveServer  # registered by e2e/conftest.py
from vendor_stubs import LoaderSite, VendorRoutes, calls, run, wait_calls


def site_fixture(tmp_name: str, destinations: dict[str, dict]):
    """A module-scoped ``site``: one server and source with ``destinations`` (slug -> settings)
    added in order — the vendor under test, then a neighbour for the blocked-script check."""

    @pytest.fixture(scope="module", name="site")
    def site(tmp_path_factory):
        site = LoaderSite(tmp_path_factory.mktemp(tmp_name), LiveServer)
        for slug, settings in destinations.items():
            site.add(slug, settings)
        yield site
        site.close()

    return site


def page_fixture(slug: str, ready):
    """A module-scoped ``page`` of the site with all vendors served at once, returned once the
    ``slug`` stub's recorded calls satisfy ``ready(calls)``; ``page.routes`` holds the requests."""

    @pytest.fixture(scope="module", name="page")
    def page(site, browser):
        context = browser.new_context()
        routes = VendorRoutes().install(context)
        page = site.open(context)
        wait_calls(page, slug, ready)
        page.routes = routes
        yield page
        context.close()

    return page


def new_calls_of(slug: str):
    """``new_calls(page, action, count=1)``: run ``action`` and return the (at least ``count``)
    calls it added to the ``slug`` stub's record."""

    def new_calls(page, action, count=1):
        before = len(calls(page, slug))
        run(page, action)
        return wait_calls(page, slug, lambda c: len(c) >= before + count)[before:]

    return new_calls
