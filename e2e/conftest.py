"""Browser tests: pytest-playwright in real Chromium against a real uvicorn server.

Debian's /usr/bin/chromium is used when present (Playwright cannot download browsers on every
machine); elsewhere Playwright's own Chromium (`python -m playwright install chromium`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# tests/conftest.py under its own module name: a plain "from conftest import" would find this file.
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("tests_conftest", Path(__file__).resolve().parent.parent / "tests" / "conftest.py")
_shared = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shared)
LiveServer, catalog, live_server_factory, pg = _shared.LiveServer, _shared.catalog, _shared.live_server_factory, _shared.pg
# Webhook receivers here are on 127.0.0.1, which the egress rules refuse by default: every server
# these tests start allows it (tests/conftest.py sets the same, this says so where it is used).
os.environ.setdefault("SWITCHBOARD_ALLOW_PRIVATE_EGRESS", "true")

SYSTEM_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    args = {**browser_type_launch_args, "args": CHROMIUM_FLAGS}
    if os.path.exists(SYSTEM_CHROMIUM):
        args["executable_path"] = SYSTEM_CHROMIUM
    return args


E2E = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    """Mark the browser tests ``e2e`` and run them after every other test (a stable sort).

    pytest-playwright's session keeps an event loop running in its process from the first browser
    test on, so an ``asyncio.run()`` in a later test of the same process fails ("cannot be called
    from a running event loop"). Last in the collection, they are also last in each process of
    ``make test``'s parallel run, which hands out files in collection order (Makefile).
    """
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.path.is_relative_to(E2E))


@pytest.fixture(scope="session")
def base_url():
    # pytest-base-url's own fixture is an instance method, which pytest 9 warns about (an error
    # here); every browser test opens absolute URLs, so there is no base URL.
    return None
