"""``switchboard --token`` / ``SWITCHBOARD_TOKEN``: the API's tokens scope the CLI (issue #17).

The matrix walks the real parser tree: every command × a viewer, editor and owner token, a
revoked one and an unknown one. A command that declares no role fails here, as does one whose
role differs from the API's rule written out in ``EXPECTED``. Cells run in-process through
``server.cli.main`` on a copy of one prepared SQLite database; one test runs the real command
in a subprocess for its exit status and stderr.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from server.api import regulations as regulation_service
from server.api import service, users
from server.cli import build_parser, main
from server.cli_access import LEVELS, OPERATOR
from server.store import audit, open_store, tokens, workspace
from server.store.schema import admin_tokens

ROOT = Path(__file__).resolve().parent.parent

# The API's rule, for the CLI: reads viewer, changes editor, users and tokens owner; commands that
# run servers, workers or schedulers, or create the database, take no token.
EXPECTED = {
    ("serve",): OPERATOR, ("init",): OPERATOR, ("worker",): OPERATOR, ("warehouse", "run"): OPERATOR,
    ("catalog",): "viewer", ("sources", "list"): "viewer", ("destinations", "list"): "viewer",
    ("regulate", "list"): "viewer", ("regulate", "show"): "viewer", ("warehouse", "syncs"): "viewer",
    ("warehouse", "skipped"): "viewer",
    ("sources", "create"): "editor", ("sources", "set"): "editor", ("destinations", "add"): "editor",
    ("regulate", "create"): "editor", ("warehouse", "sync"): "editor", ("replay",): "editor",
    ("users", "add"): "owner", ("users", "list"): "owner", ("users", "set-password"): "owner",
    ("users", "set-role"): "owner", ("users", "remove"): "owner",
    ("tokens", "create"): "owner", ("tokens", "list"): "owner", ("tokens", "revoke"): "owner",
}
ROLES = ("viewer", "editor", "owner")
STATES = (*ROLES, "revoked", "unknown")


def leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command path, parser) for every runnable command of the tree."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaves(sub, (*prefix, name))


COMMANDS = dict(leaves(build_parser()))


def test_every_command_declares_the_role_the_api_rule_gives_it():
    declared = {path: parser.get_default("needs") for path, parser in COMMANDS.items()}
    undeclared = sorted(" ".join(p) for p, role in declared.items() if role not in LEVELS)
    assert not undeclared, f"commands without a role (cli_access.needs): {undeclared}"
    assert declared == EXPECTED


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One database with a token of every role, a revoked one, and something for every command to
    act on; each matrix cell works on its own copy."""
    folder = tmp_path_factory.mktemp("cli-token")
    path = folder / "template.db"
    engine = open_store(f"sqlite:///{path}")
    from server.catalog import load_catalog

    catalog = load_catalog()
    made = {role: tokens.issue_token(engine, f"{role}-bot", role) for role in ROLES}
    revoked = tokens.issue_token(engine, "gone", "owner")
    tokens.revoke_token(engine, revoked["id"])
    spare = tokens.issue_token(engine, "spare", "viewer")
    users.create_user(engine, {"username": "root", "password": "root password", "role": "owner"}, actor="setup")
    users.create_user(engine, {"username": "vic", "password": "vic password", "role": "viewer"}, actor="setup")
    source = service.create_source(engine, {"name": "Site"}, actor="setup")
    hook = service.add_destination(engine, catalog, source["id"], {
        "slug": "webhooks", "settings": {"url": "http://127.0.0.1:9/in"}}, actor="setup", allow_private_egress=True)
    store = service.add_destination(engine, catalog, source["id"], {
        "slug": "warehouse", "settings": {"target": "sqlite", "sqlite_path": str(folder / "warehouse.db")}},
        actor="setup")
    regulation = regulation_service.create(engine, {"type": "suppress", "user_ids": ["u0"]}, "setup")
    engine.dispose()  # the file is complete (no write-ahead log left) before it is copied
    argv = {
        ("serve",): ["serve", "--port", "1"], ("init",): ["init"], ("worker",): ["worker"],
        ("warehouse", "run"): ["warehouse", "run"],
        ("catalog",): ["catalog"], ("sources", "list"): ["sources", "list"],
        ("destinations", "list"): ["destinations", "list", "Site"], ("regulate", "list"): ["regulate", "list"],
        ("regulate", "show"): ["regulate", "show", str(regulation["id"])],
        ("warehouse", "syncs"): ["warehouse", "syncs", str(store["id"]), "--json"],
        ("warehouse", "skipped"): ["warehouse", "skipped", str(store["id"]), "--json"],
        ("sources", "create"): ["sources", "create", "Shop"],
        ("sources", "set"): ["sources", "set", "Site", "--library-name", "analytics.js"],
        ("destinations", "add"): ["destinations", "add", "Site", "slack", "--json"],
        ("regulate", "create"): ["regulate", "create", "suppress", "u1"],
        ("warehouse", "sync"): ["warehouse", "sync", str(store["id"])],
        ("replay",): ["replay", "--destination", str(hook["id"])],
        ("users", "add"): ["users", "add", "newbie", "--role", "editor"], ("users", "list"): ["users", "list"],
        ("users", "set-password"): ["users", "set-password", "vic"],
        ("users", "set-role"): ["users", "set-role", "vic", "editor"], ("users", "remove"): ["users", "remove", "vic"],
        ("tokens", "create"): ["tokens", "create", "--name", "more", "--role", "viewer"],
        ("tokens", "list"): ["tokens", "list"], ("tokens", "revoke"): ["tokens", "revoke", str(spare["id"])],
    }
    secrets = {**{role: made[role]["token"] for role in ROLES}, "revoked": revoked["token"],
               "unknown": tokens.TOKEN_PREFIX + "not-a-token-anybody-has"}
    return {"path": path, "argv": argv, "tokens": secrets, "ids": {r: made[r]["id"] for r in ROLES}}


def _audit_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(audit.audit_log)).scalar_one()


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("command", sorted(EXPECTED), ids=" ".join)
def test_matrix(command, state, prepared, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "cell.db"
    shutil.copyfile(prepared["path"], copy)
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", f"sqlite:///{copy}")
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)
    needed = EXPECTED[command]
    if needed == OPERATOR:
        # Were the refusal missing, the command would stop at once on this setting instead of
        # starting a server: the operator refusal comes before any setting is read.
        monkeypatch.setenv("SWITCHBOARD_LOG_LEVEL", "chatty")
    engine = open_store(f"sqlite:///{copy}")
    before = _audit_count(engine)
    try:
        status = main(["--token", prepared["tokens"][state], *prepared["argv"][command]])
        out, err = capsys.readouterr()
        name = " ".join(command)
        if needed == OPERATOR:
            assert status == 2 and err.strip() == (
                f"switchboard: error: `{name}` is an operator command: it needs the database "
                "(SWITCHBOARD_DATABASE_URL), not a token (given by --token); run it without --token and with "
                "SWITCHBOARD_TOKEN unset")
        elif state in ("revoked", "unknown"):
            assert status == 2 and err.startswith("switchboard: error: the token given by --token is not valid "
                                                  "(unknown or revoked);")
        elif ROLES.index(state) < ROLES.index(needed):
            assert status == 2 and err.strip() == (
                f"switchboard: error: `{name}` needs the {needed} role; the token '{state}-bot' has the {state} role")
        else:
            assert status == 0, err
            assert out and not err
            # What the command changed is recorded as the token's, and its use is noted.
            added = audit.list_entries(engine, limit=500)[: _audit_count(engine) - before]
            assert {e["actor"] for e in added} <= {f"token:{state}-bot"}
            with engine.connect() as conn:
                used = conn.execute(select(admin_tokens.c.last_used_at).where(
                    admin_tokens.c.id == prepared["ids"][state])).scalar_one()
            assert used is not None
            return
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not out
        assert _audit_count(engine) == before  # a refused command changes nothing
    finally:
        engine.dispose()


# ------------------------------------------------------------------ behaviour


@pytest.fixture
def team(db_url, monkeypatch):
    """A database with a source and a token of every role; the CLI pointed at it, no token set."""
    monkeypatch.setenv("SWITCHBOARD_DATABASE_URL", db_url)
    monkeypatch.delenv("SWITCHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("SWITCHBOARD_ADMIN_TOKEN", raising=False)
    engine = open_store(db_url)
    service.create_source(engine, {"name": "Site"}, actor="setup")
    engine.secrets = {role: tokens.issue_token(engine, f"{role}-bot", role) for role in ROLES}
    yield engine
    engine.dispose()


def _destinations(engine) -> int:
    source = workspace.list_sources(engine)[0]
    return len(workspace.list_destinations(engine, source["id"]))


def test_a_viewer_lists_sources_but_cannot_add_a_destination(team, monkeypatch, capsys):
    monkeypatch.setenv("SWITCHBOARD_TOKEN", team.secrets["viewer"]["token"])
    assert main(["sources", "list"]) == 0
    assert "Site" in capsys.readouterr().out
    assert main(["destinations", "add", "Site", "slack"]) == 2
    assert capsys.readouterr().err == (
        "switchboard: error: `destinations add` needs the editor role; the token 'viewer-bot' has the viewer role\n")
    assert _destinations(team) == 0


def test_an_editor_adds_a_destination_but_cannot_add_a_user_and_an_owner_can(team, capsys):
    editor, owner = team.secrets["editor"]["token"], team.secrets["owner"]["token"]
    assert main(["--token", editor, "destinations", "add", "Site", "slack"]) == 0
    assert _destinations(team) == 1
    assert main(["--token", editor, "users", "add", "ann"]) == 2
    assert "`users add` needs the owner role; the token 'editor-bot' has the editor role" in capsys.readouterr().err
    assert [u["username"] for u in users.list_users(team)] == []
    assert main(["--token", owner, "users", "add", "ann", "--role", "editor"]) == 0
    assert [(u["username"], u["role"]) for u in users.list_users(team)] == [("ann", "editor")]
    entries = audit.list_entries(team)
    assert [(e["action"], e["actor"]) for e in entries[:2]] == [
        ("user.create", "token:owner-bot"), ("destination.create", "token:editor-bot")]
    assert entries[0]["origin"]["user_agent"] == "cli"


def test_without_a_token_the_cli_is_the_operator_recorded_as_cli(team, capsys):
    assert main(["users", "add", "ann"]) == 0 and main(["sources", "create", "Shop"]) == 0
    assert [(e["action"], e["actor"]) for e in audit.list_entries(team) if e["actor"] != "setup"] == [
        ("source.create", "cli"), ("user.create", "cli")]


def test_a_revoked_token_is_refused_at_once_by_the_real_command(team, db_url):
    """The real console entry point: exit status 2 and one line, after `tokens revoke`."""
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": db_url, "SWITCHBOARD_LOG_LEVEL": "WARNING",
           "SWITCHBOARD_TOKEN": team.secrets["viewer"]["token"]}
    env.pop("SWITCHBOARD_ADMIN_TOKEN", None)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server.cli", *args], env={**env, **extra}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert run("sources", "list").returncode == 0
    revoke = run("--token", team.secrets["owner"]["token"], "tokens", "revoke", str(team.secrets["viewer"]["id"]))
    assert revoke.returncode == 0, revoke.stderr
    refused = run("sources", "list")
    assert refused.returncode == 2 and not refused.stdout
    assert refused.stderr.splitlines() == [
        "switchboard: error: the token given by SWITCHBOARD_TOKEN is not valid (unknown or revoked); "
        "`switchboard tokens list` shows the tokens, `switchboard tokens create` makes one"]
    assert [e["actor"] for e in audit.list_entries(team, action="token.revoke")] == ["token:owner-bot"]


def test_the_token_from_standard_input_and_its_mistakes(team, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(team.secrets["editor"]["token"] + "\n"))
    assert main(["--token-stdin", "sources", "create", "Shop"]) == 0
    assert audit.list_entries(team, action="source.create")[0]["actor"] == "token:editor-bot"
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["--token-stdin", "sources", "list"]) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\n"))
    assert main(["--token-stdin", "users", "add", "ann", "--password-stdin"]) == 2
    assert main(["--token", " ", "sources", "list"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "switchboard: error: --token-stdin: standard input gave no token",
        "switchboard: error: --token-stdin and --password-stdin both read standard input; give the token in "
        "SWITCHBOARD_TOKEN",
        "switchboard: error: --token is empty (leave it out to run as the operator)",
    ]
    with pytest.raises(SystemExit) as exited:  # after the command, argparse would only say "unrecognized"
        main(["sources", "list", "--token", team.secrets["viewer"]["token"]])
    assert exited.value.code == 2
    assert "--token goes before the command" in capsys.readouterr().err


def test_the_bootstrap_token_is_an_owner_recorded_as_the_api_records_it(team, monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_ADMIN_TOKEN", "bootstrap-secret-for-the-test")
    assert main(["--token", "bootstrap-secret-for-the-test", "users", "add", "ann"]) == 0
    assert audit.list_entries(team, action="user.create")[0]["actor"] == "api"


def test_an_empty_variable_is_no_token_and_a_token_overrides_the_variable(team, monkeypatch, capsys):
    monkeypatch.setenv("SWITCHBOARD_TOKEN", "")
    assert main(["users", "add", "ann"]) == 0  # the operator
    monkeypatch.setenv("SWITCHBOARD_TOKEN", team.secrets["owner"]["token"])
    assert main(["--token", team.secrets["viewer"]["token"], "users", "add", "bob"]) == 2
    assert "'viewer-bot' has the viewer role" in capsys.readouterr().err


def test_help_says_where_a_token_goes_and_why_the_variable_is_safer(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--token TOKEN" in text and "--token-stdin" in text
    assert "shows in `ps`" in text and "SWITCHBOARD_TOKEN" in text
