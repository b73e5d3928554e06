"""``switchboard``: serve, init, catalog, sources, destinations, tokens (and the planes' own commands).

Bad arguments or settings print one clear line and exit with status 2; a mistyped command, slug,
setting or source name gets a "did you mean". Output piped into ``head`` ends quietly. With
``--token`` or ``SWITCHBOARD_TOKEN`` a command runs with that token's role and audit name
(``server.cli_access``; each command declares its role with ``needs``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Sequence

from server import cli_access
from server.cli_access import OPERATOR, actor, needs
from server.cli_support import EXIT_USAGE, CliError
from server.cli_support import Parser as _Parser
from server.cli_support import catalog as _catalog
from server.cli_support import check_port, closest, did_you_mean
from server.cli_support import config as _config
from server.cli_support import engine as _engine
from server.config import Config


def snippet_text(config: Config, write_key: str, engine=None) -> str:
    """The snippet to paste (the bundle plane's, as the web app shows it)."""
    from server import cdn

    return cdn.snippet_html(config, write_key, engine, _catalog() if engine is not None else None)


# ---------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from server.api.edge import uvicorn_options  # header limits, timeouts, connection cap

    config = _config()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("role", args.role)) if v is not None}
    if config.role == "edge" or args.role == "edge":
        overrides["delivery_workers"] = False  # an edge takes events in; `switchboard worker` sends them on
    if args.demo:
        overrides["demo"] = True  # /demo is served only with --demo
    if overrides:
        config = Config(**{**config.__dict__, **overrides})
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = _engine(config)
    _catalog()  # a broken manifest stops the boot here, with its message
    check_port(config.host, config.port)  # a busy port: one line naming it, not uvicorn's Errno 98
    if args.demo:
        _print_demo(config, engine)
    workers = args.workers or default_workers(config)
    if workers > 1:
        _serve_processes(config, workers)
        return
    from server.app import create_app

    app = create_app(config, engine=engine)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level.lower(),
                proxy_headers=config.trust_proxy, **uvicorn_options(config))


def default_workers(config: Config) -> int:
    """One process per core for an edge server (it only answers requests), else one."""
    import os

    return (os.cpu_count() or 1) if config.role == "edge" else 1


def _serve_processes(config: Config, workers: int) -> None:
    """``serve --workers N``: N uvicorn processes on one port (uvicorn's supervisor; each process
    builds the app from the same SWITCHBOARD_* environment and keeps our EdgeProtocol).

    Background work does not multiply with N: the HTTP processes run no delivery workers or
    warehouse scheduler; when this server is meant to run them (role ``all``), one
    ``switchboard worker`` child process does, and stops with the server."""
    import os
    import subprocess

    import uvicorn

    from server.api.edge import uvicorn_options

    os.environ["SWITCHBOARD_HOST"], os.environ["SWITCHBOARD_PORT"] = config.host, str(config.port)
    os.environ["SWITCHBOARD_ROLE"] = config.role
    os.environ["SWITCHBOARD_DELIVERY_WORKERS"] = "false"
    os.environ["SWITCHBOARD_DEMO"] = str(config.demo).lower()
    background = None
    if config.delivery_workers:
        background = subprocess.Popen([sys.executable, "-m", "server.cli", "worker"], stdout=subprocess.DEVNULL)
    try:
        uvicorn.run("server.app:app_from_env", factory=True, host=config.host, port=config.port,
                    workers=workers, log_level=config.log_level.lower(), proxy_headers=config.trust_proxy,
                    **uvicorn_options(config, workers=True))
    finally:
        if background is not None and background.poll() is None:
            background.terminate()
            try:
                background.wait(30)
            except subprocess.TimeoutExpired:
                background.kill()


def _print_demo(config: Config, engine) -> None:
    from server import demo
    from server.store import tokens

    seeded = demo.seed_demo(engine)
    source = demo.demo_source(engine)
    lines = ["", "Switchboard is starting on " + config.origin]
    from server.web import admin_lines  # the web app's account: password printed once

    lines += ["  " + line for line in admin_lines(config, engine)]
    if seeded:
        token = tokens.create_token(engine, "make run")
        lines += [f"  Demo source:   {source['name']} (write key {source['write_key']})",
                  f"  Admin token:   {token}   (shown once; `switchboard tokens create` makes another)"]
        extra = getattr(demo, "first_run_lines", None)
        if extra:
            lines += extra(config, engine)
    elif source:
        lines += [f"  Demo source:   {source['name']} (write key {source['write_key']})"]
    if source:
        lines += [f"  Demo page:     {config.origin}/demo",
                  f"  Snippet:       {config.origin}/snippet/{source['write_key']}.js",
                  f"  API docs:      {config.origin}/api/docs   (sign in first; the admin API is /api/v1)"]
    lines += demo.egress_lines(config)
    print("\n".join(lines) + "\n", flush=True)


def cmd_init(args: argparse.Namespace) -> None:
    from server.store import tokens

    config = _config()
    engine = _engine(config)
    _catalog()
    token = tokens.create_token(engine, "init")
    print(f"Database ready at {config.database_url}")
    print(f"Admin token (shown once): {token}")
    from server.web import admin_lines  # the web app's account: password printed once

    print("\n".join(admin_lines(config, engine)) or f"Admin user: {config.admin_user} (exists already)")


def cmd_sources_create(args: argparse.Namespace) -> None:
    from server.api import service

    config = _config()
    engine = _engine(config)
    source = service.create_source(engine, {"name": args.name}, actor=actor())
    if args.json:
        print(json.dumps({**source, "snippet": snippet_text(config, source["write_key"])}))
        return
    print(f"id:        {source['id']}")
    print(f"write key: {source['write_key']}")
    print("snippet:")
    print(snippet_text(config, source["write_key"], engine))


def cmd_sources_list(args: argparse.Namespace) -> None:
    from server.store import workspace

    rows = workspace.list_sources(_engine(_config()))
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k in ("id", "name", "write_key", "enabled", "settings_version")} for r in rows]))
        return
    print(f"{'ID':>4}  {'NAME':<24} {'WRITE KEY':<34} {'ENABLED':<7} VERSION")
    for r in rows:
        print(f"{r['id']:>4}  {r['name'][:24]:<24} {r['write_key']:<34} {str(r['enabled']).lower():<7} {r['settings_version']}")


def cmd_sources_set(args: argparse.Namespace) -> None:
    from server.api import service

    engine = _engine(_config())
    source = _resolve_source(engine, args.source)
    body: dict[str, Any] = {}
    if args.library_name is not None:
        body["library_name"] = args.library_name
    if args.server_cookies is not None:
        body["server_cookies"] = args.server_cookies == "on"
    if not body:
        raise CliError("say what to change: --library-name, --server-cookies or both")
    updated = service.update_source(engine, source["id"], body, actor=actor())
    print(f"{updated['name']}: library name {updated['library_name']}, server-set cookies "
          f"{'on' if updated['server_cookies'] else 'off'} (settings version {updated['settings_version']})")


def _resolve_source(engine, ref: str) -> dict[str, Any]:
    """The source an argument names: its id or write key, else its slug, else its name.

    Names need not be unique: when two sources share the name, refuse and list their ids
    rather than pick one.
    """
    from server.store import workspace

    sources = workspace.list_sources(engine)
    for keys in (("id", "write_key"), ("slug",), ("name",)):
        found = [s for s in sources if ref in (str(s[k]) for k in keys)]
        if len(found) == 1:
            return found[0]
        if found:
            ids = ", ".join(str(s["id"]) for s in found)
            raise CliError(f"{len(found)} sources are named {ref!r} (ids {ids}): give the id instead")
    hint = did_you_mean(ref, [s["name"] for s in sources] + [s["slug"] for s in sources])
    raise CliError(f"no source {ref!r}{hint} (give its id, name, slug or write key; see `switchboard sources list`)")


def _parse_value(raw: str, kind: str) -> Any:
    """A --set value: text for text settings (site_id=123 stays "123"), JSON for the others."""
    if kind in ("string", "select"):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _manifest(catalog, slug: str):
    """The manifest of a slug; a name, an alias or a typo gets the slug to use suggested."""
    manifest = catalog.get(slug)
    if manifest is None:
        # Every way a person may call a destination, lower-cased, pointing at its slug.
        names = {n.lower(): m.slug for m in catalog for n in (m.slug, *m.integration_names)}
        near = slug.lower() if slug.lower() in names else closest(slug.lower(), names)
        guess = names[near] if near else None
        hint = f" (did you mean {guess!r}?)" if guess else ""
        raise CliError(f"{slug!r} is not in the catalog{hint}; see `switchboard catalog`")
    return manifest


def cmd_destinations_add(args: argparse.Namespace) -> None:
    from server.api import service
    from server.errors import ApiError

    config = _config()
    engine = _engine(config)
    catalog = _catalog()
    source = _resolve_source(engine, args.source)
    manifest = _manifest(catalog, args.slug)
    settings: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set {item!r}: expected key=value")
        setting = manifest.setting(key)
        if setting is None:
            hint = did_you_mean(key, [s.key for s in manifest.settings])
            raise CliError(f"--set {key}: not a setting of {manifest.name}{hint}; "
                           f"see `switchboard catalog {manifest.slug}`")
        settings[key] = _parse_value(value, setting.type)
    # Switched off unless --enable, as the web app and the API create it.
    body = {"slug": args.slug, "settings": settings, "enabled": bool(args.enable)}
    if args.mode:
        body["mode"] = args.mode
    try:
        dest = service.add_destination(engine, catalog, source["id"], body, actor=actor(),
                                       allow_private_egress=config.allow_private_egress)
    except ApiError as exc:
        raise CliError(f"{exc.field + ': ' if exc.field else ''}{exc.message}") from None
    if args.json:
        print(json.dumps(dest))
        return
    state = "enabled" if dest["enabled"] else (
        "switched off: turn it on on its page in the web app, with PATCH /api/v1/destinations/"
        f"{dest['id']} {{\"enabled\": true}}, or add it with --enable")
    print(f"Added {dest['name']} (id {dest['id']}, {dest['mode']} mode) to {source['name']}, {state}")


def cmd_catalog(args: argparse.Namespace) -> None:
    catalog = _catalog()
    if args.slug:
        manifest = _manifest(catalog, args.slug)
        if args.json:
            print(json.dumps(manifest.to_json()))
            return
        print(f"{manifest.name} ({manifest.slug}), {manifest.category}: {manifest.description}")
        print(f"modes: {', '.join(manifest.modes)} (default {manifest.default_mode})")
        if manifest.aliases:
            print(f"also known as: {', '.join(manifest.aliases)}")
        for s in manifest.settings:
            marks = [s.type] + (["required"] if s.required else []) + (["secret"] if s.secret else [])
            if len(s.modes) < len(manifest.modes):
                marks.append(f"{'/'.join(s.modes)} only")
            print(f"  {s.key:<26} {s.label} ({', '.join(marks)})")
        return
    rows = [{"slug": m.slug, "name": m.name, "category": m.category, "modes": list(m.modes),
             "default_mode": m.default_mode, "aliases": list(getattr(m, "aliases", ()) or ())} for m in catalog]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'SLUG':<22} {'NAME':<22} {'MODES':<13} ALIASES")
    for r in rows:
        print(f"{r['slug']:<22} {r['name'][:22]:<22} {','.join(r['modes']):<13} {', '.join(r['aliases'])}")


def cmd_destinations_list(args: argparse.Namespace) -> None:
    from server.api import service
    from server.store import workspace

    engine = _engine(_config())
    catalog = _catalog()
    source = _resolve_source(engine, args.source)
    rows = [service.destination_json(catalog, d) for d in workspace.list_destinations(engine, source["id"])]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'ID':>4}  {'DESTINATION':<22} {'MODE':<7} {'ENABLED':<7} SETTINGS")
    for d in rows:
        print(f"{d['id']:>4}  {d['name'][:22]:<22} {d['mode']:<7} {str(d['enabled']).lower():<7} {json.dumps(d['settings'])}")


# ---------------------------------------------------------------- parser


def _port_argument(value: str) -> int:
    # Checked like SWITCHBOARD_PORT, so a bad --port is one line here instead of a bind() traceback.
    from server.config import _port

    try:
        return _port(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number between 1 and 65535") from None


def _workers_argument(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of processes")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="switchboard", description=(
        "Self-hosted, Segment-compatible event router. Settings come from SWITCHBOARD_* environment "
        "variables (see README). Without a token a command may do anything the database allows (the "
        "operator); with --token or SWITCHBOARD_TOKEN it runs with that token's role (see docs/admin-api.md)."))
    parser.add_argument("--version", action="version", version=f"switchboard {_version()}")
    cli_access.add_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (bundles, collector, admin API, web app, delivery)")
    serve.add_argument("--host", help="listen address (default SWITCHBOARD_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=_port_argument, help="listen port (default SWITCHBOARD_PORT or 8000)")
    serve.add_argument("--workers", type=_workers_argument,
                       help="HTTP server processes sharing the port (default: one per CPU core with role edge, "
                            "else 1); with more than one and role all, delivery and warehouse loads run in one "
                            "extra `switchboard worker` process")
    serve.add_argument("--role", choices=["all", "edge"],
                       help="all: everything (default, or SWITCHBOARD_ROLE); edge: bundles, collector, admin API "
                            "and web app only — delivery and warehouse loads run in `switchboard worker`")
    serve.add_argument("--demo", action="store_true",
                       help="serve the demo page /demo (off otherwise), seed a demo source on an empty database "
                            "and print its URLs and an admin token")
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init", help="create or migrate the database, print a new admin token and, on a "
                          "database without one, create the web app's admin account (password printed once)")
    init.set_defaults(func=cmd_init)

    cat = sub.add_parser("catalog", help="list the destinations you can add (slug, name, modes, aliases), "
                         "or one destination's settings")
    cat.add_argument("slug", nargs="?", help="show this destination's settings")
    cat.add_argument("--json", action="store_true", help="print JSON")
    cat.set_defaults(func=cmd_catalog)

    sources = sub.add_parser("sources", help="manage sources").add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    create = sources.add_parser("create", help="create a source; prints its id, write key and snippet")
    create.add_argument("name")
    create.add_argument("--json", action="store_true", help="print the source (and its snippet) as JSON")
    create.set_defaults(func=cmd_sources_create)
    listing = sources.add_parser("list", help="list sources")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_sources_list)
    setter = sources.add_parser("set", help="change a source's settings")
    setter.add_argument("source", help="source id, name, slug or write key")
    setter.add_argument("--library-name", metavar="NAME",
                        help="context.library.name its bundle sends (analytics.js for sites moving from Segment; "
                             "switchboard.js, the default, or \"\" to go back)")
    setter.add_argument("--server-cookies", choices=["on", "off"],
                        help="whether its bundle has the collector set the visitor's id cookies again once a day "
                             "(Safari's 7-day cap; the collector must share the site's domain: docs/bundle.md)")
    setter.set_defaults(func=cmd_sources_set)

    dests = sub.add_parser("destinations", help="manage a source's destinations").add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    add = dests.add_parser("add", help="connect a catalog destination to a source (switched off unless --enable)")
    add.add_argument("source", help="source id, name, slug or write key")
    add.add_argument("slug", help="catalog slug, e.g. google_analytics_4 (see `switchboard catalog`)")
    add.add_argument("--mode", choices=["device", "cloud"], help="default: the destination's default mode")
    add.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="a setting (JSON values for numbers, booleans, lists and maps); repeat")
    add.add_argument("--enable", action="store_true",
                     help="switch it on at once (its required settings must then be given); "
                          "by default it is added switched off, as in the web app and the API")
    add.add_argument("--disabled", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    add.add_argument("--json", action="store_true", help="print the destination as JSON (secrets masked)")
    add.set_defaults(func=cmd_destinations_add)
    dlist = dests.add_parser("list", help="list a source's destinations (secrets masked)")
    dlist.add_argument("source", help="source id, name, slug or write key")
    dlist.add_argument("--json", action="store_true", help="print JSON")
    dlist.set_defaults(func=cmd_destinations_list)
    # The role each command needs with a token (the API's rule; checked in main, nowhere else).
    needs(OPERATOR, serve, init)
    needs("viewer", cat, listing, dlist)
    needs("editor", create, setter, add)

    import importlib

    for name in COMMAND_PLANES:  # the planes' own subcommands (worker, replay, warehouse sync, users, tokens)
        importlib.import_module(name).add_commands(sub)
    return parser


# The modules that add subcommands: the worker and the planes of server.app.PLANES that have
# ``add_commands`` (tests/test_cli.py checks the two lists agree). Named here rather than found
# through server.app so that a command imports only the planes with commands: the web app, the
# collector and the bundle plane stay unloaded (a command starts 0.1-0.4 s sooner, about a third).
COMMAND_PLANES = ("server.worker", "server.admin", "server.delivery", "server.warehouse", "server.privacy")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard")
    except PackageNotFoundError:  # pragma: no cover  (run from a checkout that was never installed)
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from server.errors import ApiError

    from server.store import audit

    # The audit's "from where" of this command's changes (a server sets its own per request).
    origin = audit.origin.set(audit.CLI if args.func is not cmd_serve and args.command != "worker" else None)
    try:
        try:
            with cli_access.acting(args):  # the token's role and audit name, or the operator's
                args.func(args)
        finally:
            sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
    except BrokenPipeError:
        # `switchboard … | head`: the reader has gone; stop quietly, no traceback. Point stdout at
        # /dev/null so the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CliError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:  # the shared service layer's validation errors (e.g. an empty name)
        print(f"switchboard: error: {exc.field + ': ' if exc.field else ''}{exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    finally:
        audit.origin.reset(origin)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
