"""The ``switchboard`` command, run as a real subprocess against a temporary SQLite database,
and ``switchboard serve --demo`` as a real server."""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from pgserver import free_port, wait_for_port
from server.app import create_app
from server.cli import build_parser, snippet_text
from server.config import Config
from server.store import open_store, workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def run(*args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "server.cli", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        if expect is not None:
            assert done.returncode == expect, (args, done.stdout, done.stderr)
        return done

    run.url = url
    return run


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_init_prints_a_token_that_works_against_the_api(cli, catalog):
    done = cli("init")
    token = re.search(r"token[^:]*:\s*(\S+)", done.stdout).group(1)
    engine = open_store(cli.url)
    try:
        app = create_app(Config(database_url=cli.url), engine=engine, catalog=catalog, planes=["server.admin"])
        with TestClient(app) as client:
            assert client.get("/api/v1/sources", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert client.get("/api/v1/sources", headers={"Authorization": "Bearer sb_nope"}).status_code == 401
        # init again: the database is kept, another token is added.
        second = re.search(r"token[^:]*:\s*(\S+)", cli("init").stdout).group(1)
        assert second != token
        with TestClient(app) as client:
            for t in (token, second):
                assert client.get("/api/v1/sources", headers={"Authorization": f"Bearer {t}"}).status_code == 200
    finally:
        engine.dispose()


def test_sources_and_destinations_commands(cli):
    created = cli("sources", "create", "Marketing site").stdout
    source_id = int(re.search(r"^id:\s*(\d+)", created, re.M).group(1))
    write_key = re.search(r"^write key:\s*(\S+)", created, re.M).group(1)
    assert "<script" in created and write_key in created.split("snippet", 1)[1]

    engine = open_store(cli.url)
    try:
        assert workspace.get_source(engine, source_id)["write_key"] == write_key
    finally:
        engine.dispose()

    listed = cli("sources", "list").stdout
    assert "Marketing site" in listed and write_key in listed
    rows = json.loads(cli("sources", "list", "--json").stdout)
    assert [(r["id"], r["name"], r["write_key"]) for r in rows] == [(source_id, "Marketing site", write_key)]

    added = cli("destinations", "add", "Marketing site", "google_analytics_4", "--mode", "device",
                "--set", "measurement_id=G-ABC123", "--enable")
    assert "Google Analytics 4" in added.stdout and "enabled" in added.stdout
    cli("destinations", "add", str(source_id), "webhooks", "--set", "url=https://example.com/hook",
        "--set", "shared_secret=cli-secret-value", "--set", 'headers={"X-Key": "cli-header-secret"}', "--enable")

    dests = json.loads(cli("destinations", "list", write_key, "--json").stdout)
    assert [(d["slug"], d["mode"], d["enabled"]) for d in dests] == [
        ("google_analytics_4", "device", True), ("webhooks", "cloud", True)]
    assert dests[0]["settings"] == {"measurement_id": "G-ABC123"}
    table = cli("destinations", "list", "marketing_site").stdout
    assert "G-ABC123" in table and "Webhooks" in table
    for output in (table, json.dumps(dests)):
        assert "cli-secret-value" not in output and "cli-header-secret" not in output

    token = cli("tokens", "create", "--name", "ci").stdout.strip()
    assert token.startswith("sb_") and len(token) > 30


def test_mistakes_get_one_line_and_exit_status_2(cli):
    cli("sources", "create", "Site")
    line = _one_error_line(cli("destinations", "add", "Site", "google_analytics_4", "--mode", "device",
                               "--set", "measurement_id=UA-123", expect=None))
    assert "measurement_id" in line
    assert json.loads(cli("destinations", "list", "Site", "--json").stdout) == []  # nothing was added

    mistakes = [
        ("destinations", "add", "Site", "nope"),                      # not in the catalog
        ("destinations", "add", "No such site", "hotjar"),            # unknown source
        ("destinations", "add", "Site", "hotjar", "--set", "site_id"),  # not key=value
        ("destinations", "add", "Site", "slack", "--mode", "device"),  # a mode it does not have
        ("destinations", "add", "Site", "hotjar", "--mode", "sideways"),  # argparse choices
        ("destinations", "add", "Site"),                              # missing argument
        ("sources", "create", ""),                                    # empty name
        ("sources",),                                                 # missing action
        ("serve", "--port", "abc"),
        ("serve", "--port", "99999"),
        ("serve", "--workers", "0"),
        ("frobnicate",),
    ]
    for args in mistakes:
        line = _one_error_line(cli(*args, expect=None))
        assert line.startswith("switchboard")


def test_unreachable_database_is_one_line_not_a_traceback(cli, tmp_path):
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"postgresql+psycopg://x:pw@127.0.0.1:{free_port()}/db"}
    done = subprocess.run([sys.executable, "-m", "server.cli", "sources", "list"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    line = _one_error_line(done)
    assert "SWITCHBOARD_DATABASE_URL" in line and "pw" not in line.split("SWITCHBOARD_DATABASE_URL")[1]


def _commands(parser: argparse.ArgumentParser, prefix=()):
    """Every command path of the parser, e.g. ("sources", "create")."""
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))


def test_help_works_for_every_command(cli):
    commands = list(_commands(build_parser()))
    assert {("serve",), ("init",), ("sources", "create"), ("sources", "list"), ("destinations", "add"),
            ("destinations", "list"), ("tokens", "create")} <= set(commands)
    done = cli("--help")
    assert "serve" in done.stdout and "destinations" in done.stdout
    for command in commands:
        # In-process for speed (the subprocess call above proves the entry point works).
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command, "--help"])
        assert exited.value.code == 0, command


def test_the_cli_adds_every_planes_commands_and_loads_only_those_planes():
    from server.app import PLANES
    from server.cli import COMMAND_PLANES

    with_commands = ["server.worker"] + [p.__name__ for p in PLANES if hasattr(p, "add_commands")]
    assert list(COMMAND_PLANES) == with_commands
    # A command starts without the web app, the collector or the bundle plane (half its start-up).
    probe = ("import sys; from server.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('server.web', 'server.ingest', 'server.cdn', 'server.app') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)


def _read_until(stream, marker: str, timeout: float) -> str:
    """Read lines from a subprocess pipe until one contains ``marker``."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} in {''.join(seen)!r}")


def test_serve_demo_prints_the_demo_and_serves_its_page(tmp_path):
    port = free_port()
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
           "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_LOG_LEVEL": "WARNING"}

    def start():
        return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--demo"], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    process = start()
    try:
        output = _read_until(process.stdout, "API docs", 60)
        wait_for_port(port, 30)
        write_key = re.search(r"Demo source:\s+Demo site \(write key (\S+)\)", output).group(1)
        token = re.search(r"Admin token:\s+(\S+)", output).group(1)
        page_url = re.search(r"Demo page:\s+(\S+)", output).group(1)
        snippet_url = re.search(r"Snippet:\s+(\S+)", output).group(1)
        assert page_url == f"http://127.0.0.1:{port}/demo" and write_key in snippet_url
        # The API docs page (behind sign-in), not a raw openapi.json that answers 401 in a browser.
        assert re.search(r"API docs:\s+(\S+)", output).group(1) == f"http://127.0.0.1:{port}/api/docs"
        assert "openapi.json" not in output

        page = httpx.get(page_url, timeout=10)
        # The page carries the very snippet `switchboard sources create` prints for that key.
        config = Config(host="127.0.0.1", port=port)
        assert page.status_code == 200 and snippet_text(config, write_key) in page.text
        snippet = httpx.get(snippet_url, timeout=10)
        assert snippet.status_code == 200 and write_key in snippet.text
        sources = httpx.get(f"http://127.0.0.1:{port}/api/v1/sources",
                            headers={"Authorization": f"Bearer {token}"}, timeout=10).json()["sources"]
        assert [(s["name"], s["write_key"]) for s in sources] == [("Demo site", write_key)]
    finally:
        process.terminate()
        process.wait(20)

    # A second start on the same database seeds nothing and prints no new token.
    process = start()
    try:
        output = _read_until(process.stdout, "API docs", 60)
        assert "Admin token" not in output and write_key in output
    finally:
        process.terminate()
        process.wait(20)


_BREAKAGES = {
    "bad JSON": lambda text: text[:-5],
    "unknown type": lambda text: text.replace('"type": "string"', '"type": "colour"', 1),
    "folder is not the slug": None,
}


@pytest.mark.parametrize("breakage", list(_BREAKAGES))
def test_a_broken_manifest_stops_serve_with_a_message_naming_it(tmp_path, breakage):
    import shutil

    from server.catalog import DESTINATIONS_DIR

    catalog = tmp_path / "destinations"
    shutil.copytree(DESTINATIONS_DIR, catalog, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    broken = catalog / "hotjar" / "manifest.json"
    if _BREAKAGES[breakage] is None:
        broken = (catalog / "hotjar").rename(catalog / "hot_jar") / "manifest.json"
    else:
        text = broken.read_text()
        changed = _BREAKAGES[breakage](text)
        assert changed != text
        broken.write_text(changed)
    # The real `switchboard serve`, pointed at the copied catalog instead of the shipped one.
    code = (
        "import sys, pathlib, server.catalog as c; "
        f"c.load_catalog.__defaults__ = (pathlib.Path({str(catalog)!r}),); "
        "from server.cli import main; sys.exit(main(['serve']))"
    )
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "SWITCHBOARD_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    line = _one_error_line(done)
    assert "catalog" in line and str(broken.parent) in line
    if breakage == "unknown type":
        assert "type" in line.split(str(broken), 1)[1]
