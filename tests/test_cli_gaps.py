"""The CLI gaps of the tour, each run as the real ``switchboard`` command (a subprocess against a
temporary SQLite database): --version, the catalog listing, "did you mean", --json on listings,
a pipe into ``head``, duplicate source names, destinations added switched off, a busy port."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server.catalog import load_catalog
from server.store import open_store, workspace

ROOT = Path(__file__).resolve().parent.parent
SWITCHBOARD = [sys.executable, "-m", "server.cli"]


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([*SWITCHBOARD, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if expect is not None:
            assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    run.url, run.env = url, env
    return run


def _error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_version(cli):
    from importlib.metadata import version

    assert cli("--version").stdout.strip() == f"switchboard {version('switchboard')}"


def test_catalog_lists_every_destination_with_modes_and_aliases(cli):
    catalog = load_catalog()
    rows = json.loads(cli("catalog", "--json").stdout)
    assert [r["slug"] for r in rows] == [m.slug for m in catalog]
    meta = next(r for r in rows if r["slug"] == "meta_pixel")
    assert meta["name"] == "Meta Pixel" and meta["modes"] == ["device", "cloud"]
    assert meta["aliases"] == list(catalog.get("meta_pixel").aliases)
    table = cli("catalog").stdout.splitlines()
    assert table[0].split() == ["SLUG", "NAME", "MODES", "ALIASES"] and len(table) == len(rows) + 1
    assert any(line.startswith("webhooks ") and "cloud" in line for line in table)
    one = cli("catalog", "webhooks").stdout
    assert "batch_size" in one and "integer" in one
    assert json.loads(cli("catalog", "webhooks", "--json").stdout)["slug"] == "webhooks"


@pytest.mark.parametrize("args,suggestion", [
    (("sourcs", "list"), "'sources'"),
    (("sources", "lst"), "'list'"),
    (("destinations", "add", "Site", "hotjr"), "'hotjar'"),
    (("destinations", "add", "Site", "Facebook Pixel"), "'meta_pixel'"),
    (("destinations", "add", "Site", "google_analytic_4"), "'google_analytics_4'"),
    (("destinations", "add", "Site", "hotjar", "--set", "siteid=1"), "'site_id'"),
    (("destinations", "add", "Sitte", "hotjar"), "'Site'"),
    (("catalog", "webhook"), "'webhooks'"),
    (("destinations", "add", "Site", "hotjar", "--mode", "clod"), "'cloud'"),
])
def test_did_you_mean(cli, args, suggestion):
    cli("sources", "create", "Site")
    line = _error(cli(*args, expect=None))
    assert f"did you mean {suggestion}?" in line, line


def test_json_on_every_listing_and_show_command(cli):
    created = json.loads(cli("sources", "create", "Shop", "--json").stdout)
    assert created["name"] == "Shop" and created["write_key"] in created["snippet"]
    added = json.loads(cli("destinations", "add", "Shop", "webhooks", "--set", "url=https://example.com/h",
                           "--set", "shared_secret=s3cret-value", "--json").stdout)
    assert added["slug"] == "webhooks" and added["enabled"] is False and "s3cret-value" not in json.dumps(added)
    regulation = json.loads(cli("regulate", "create", "suppress", "u1", "--json").stdout)
    assert [r["id"] for r in json.loads(cli("regulate", "list", "--json").stdout)] == [regulation["id"]]
    assert json.loads(cli("regulate", "show", str(regulation["id"]), "--json").stdout)["id"] == regulation["id"]
    assert [s["id"] for s in json.loads(cli("sources", "list", "--json").stdout)] == [created["id"]]
    assert [d["id"] for d in json.loads(cli("destinations", "list", "Shop", "--json").stdout)] == [added["id"]]
    assert json.loads(cli("catalog", "--json").stdout)


def test_every_listing_and_show_command_offers_json():
    from server.cli import build_parser
    from test_cli import _commands

    parser = build_parser()
    for command in _commands(parser):
        if command and command[-1] in ("list", "show", "syncs", "catalog"):
            sub = parser
            for name in command:
                sub = next(a for a in sub._actions if a.dest in ("command", "action", "regulate_command")
                           and hasattr(a, "choices") and isinstance(a.choices, dict)).choices[name]
            assert any("--json" in a.option_strings for a in sub._actions), command


def test_piped_into_head_ends_without_a_traceback(cli):
    cli("sources", "create", "Site")
    engine = open_store(cli.url)
    try:
        for n in range(1000):  # ~100 KB of listing: more than a pipe holds, so the writer meets the closed pipe
            workspace.create_source(engine, f"Bulk source {n}")
    finally:
        engine.dispose()
    command = " ".join(map(shlex.quote, SWITCHBOARD))
    for listing in ("sources list", "sources list --json"):
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} {listing} | head -1"],
                              env=cli.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
        assert done.stderr == "" and done.returncode == 0, (listing, done.returncode, done.stderr)
        assert len(done.stdout.splitlines()) == 1


def test_a_duplicate_source_name_is_refused_with_the_ids(cli):
    first = json.loads(cli("sources", "create", "Twin", "--json").stdout)["id"]
    second = json.loads(cli("sources", "create", "Twin", "--json").stdout)["id"]
    line = _error(cli("destinations", "add", "Twin", "hotjar", expect=None))
    assert f"2 sources are named 'Twin' (ids {first}, {second})" in line and "give the id" in line
    cli("destinations", "add", str(second), "hotjar", "--set", "site_id=123")
    assert json.loads(cli("destinations", "list", str(first), "--json").stdout) == []
    assert [d["slug"] for d in json.loads(cli("destinations", "list", str(second), "--json").stdout)] == ["hotjar"]


def test_destinations_add_creates_it_switched_off_unless_enable(cli):
    cli("sources", "create", "Site")
    off = cli("destinations", "add", "Site", "hotjar", "--set", "site_id=123").stdout
    assert "switched off" in off and "--enable" in off
    # Switched off, required settings may wait (as in the web app); --enable checks them.
    cli("destinations", "add", "Site", "google_analytics_4", "--mode", "device")
    line = _error(cli("destinations", "add", "Site", "google_analytics_4", "--mode", "device", "--enable",
                      expect=None))
    assert "Measurement ID is required" in line
    on = cli("destinations", "add", "Site", "crisp", "--enable",
             "--set", "website_id=01234567-89ab-cdef-0123-456789abcdef").stdout
    assert "enabled" in on and "switched off" not in on
    rows = json.loads(cli("destinations", "list", "Site", "--json").stdout)
    assert [(d["slug"], d["enabled"]) for d in rows] == [
        ("hotjar", False), ("google_analytics_4", False), ("crisp", True)]
    assert rows[0]["settings"]["site_id"] == "123"  # a text setting given digits stays text
    help_text = cli("destinations", "add", "--help").stdout
    assert "--enable" in help_text and "switched off" in help_text


def test_a_busy_port_is_one_line_naming_the_port_and_the_setting(cli):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*SWITCHBOARD, "serve"], env={**cli.env, "SWITCHBOARD_PORT": str(port)}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        line = _error(done)
        assert f"port {port} is already in use" in line and "SWITCHBOARD_PORT" in line and "--port" in line
        flag = subprocess.run([*SWITCHBOARD, "serve", "--port", str(port)], env=cli.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert f"port {port} is already in use" in _error(flag)
    assert re.search(r"Errno", done.stderr) is None
