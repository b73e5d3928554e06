"""``switchboard``: serve, init, sources, destinations, tokens (and the planes' own commands).

Bad arguments or settings print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

from server import cdn
from server.cli_support import EXIT_USAGE, CliError
from server.cli_support import Parser as _Parser
from server.cli_support import catalog as _catalog
from server.cli_support import config as _config
from server.cli_support import engine as _engine
from server.config import Config


def snippet_text(config: Config, write_key: str, engine=None) -> str:
    """The snippet to paste (the bundle plane's, as the web app shows it)."""
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
    if args.demo:
        _print_demo(config, engine)
    if args.workers and args.workers > 1:
        import os

        os.environ["SWITCHBOARD_HOST"], os.environ["SWITCHBOARD_PORT"] = config.host, str(config.port)
        os.environ["SWITCHBOARD_ROLE"] = config.role
        os.environ["SWITCHBOARD_DELIVERY_WORKERS"] = str(config.delivery_workers).lower()
        os.environ["SWITCHBOARD_DEMO"] = str(config.demo).lower()
        uvicorn.run("server.app:app_from_env", factory=True, host=config.host, port=config.port,
                    workers=args.workers, log_level=config.log_level.lower(), proxy_headers=config.trust_proxy,
                    **uvicorn_options(config, workers=True))
        return
    from server.app import create_app

    app = create_app(config, engine=engine)
    uvicorn.run(app, host=config.host, port=config.port, log_level=config.log_level.lower(),
                proxy_headers=config.trust_proxy, **uvicorn_options(config))


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
                  f"  Admin API:     {config.origin}/api/v1/openapi.json"]
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
    source = service.create_source(engine, {"name": args.name}, actor="cli")
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
    updated = service.update_source(engine, source["id"], {"library_name": args.library_name}, actor="cli")
    print(f"{updated['name']}: library name {updated['library_name']} (settings version {updated['settings_version']})")


def _resolve_source(engine, ref: str) -> dict[str, Any]:
    from server.store import workspace

    for source in workspace.list_sources(engine):
        if ref in (str(source["id"]), source["name"], source["slug"], source["write_key"]):
            return source
    raise CliError(f"no source {ref!r} (give its id, name, slug or write key; see `switchboard sources list`)")


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def cmd_destinations_add(args: argparse.Namespace) -> None:
    from server.api import service
    from server.errors import ApiError

    config = _config()
    engine = _engine(config)
    source = _resolve_source(engine, args.source)
    settings: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set {item!r}: expected key=value")
        settings[key] = _parse_value(value)
    body = {"slug": args.slug, "settings": settings, "enabled": not args.disabled}
    if args.mode:
        body["mode"] = args.mode
    try:
        dest = service.add_destination(engine, _catalog(), source["id"], body, actor="cli",
                                       allow_private_egress=config.allow_private_egress)
    except ApiError as exc:
        raise CliError(f"{exc.field + ': ' if exc.field else ''}{exc.message}") from None
    print(f"Added {dest['name']} (id {dest['id']}, {dest['mode']} mode, {'enabled' if dest['enabled'] else 'disabled'}) to {source['name']}")


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


def cmd_tokens_create(args: argparse.Namespace) -> None:
    from server.store import tokens

    print(tokens.create_token(_engine(_config()), args.name))


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
        "variables (see README)."))
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (bundles, collector, admin API, web app, delivery)")
    serve.add_argument("--host", help="listen address (default SWITCHBOARD_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=_port_argument, help="listen port (default SWITCHBOARD_PORT or 8000)")
    serve.add_argument("--workers", type=_workers_argument, default=1, help="server processes (default 1)")
    serve.add_argument("--role", choices=["all", "edge"],
                       help="all: everything (default, or SWITCHBOARD_ROLE); edge: bundles, collector, admin API "
                            "and web app only — delivery and warehouse loads run in `switchboard worker`")
    serve.add_argument("--demo", action="store_true",
                       help="serve the demo page /demo (off otherwise), seed a demo source on an empty database "
                            "and print its URLs and an admin token")
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init", help="create or migrate the database and print a new admin token")
    init.set_defaults(func=cmd_init)

    sources = sub.add_parser("sources", help="manage sources").add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    create = sources.add_parser("create", help="create a source; prints its id, write key and snippet")
    create.add_argument("name")
    create.set_defaults(func=cmd_sources_create)
    listing = sources.add_parser("list", help="list sources")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_sources_list)
    setter = sources.add_parser("set", help="change a source's settings")
    setter.add_argument("source", help="source id, name, slug or write key")
    setter.add_argument("--library-name", required=True, metavar="NAME",
                        help="context.library.name its bundle sends (analytics.js for sites moving from Segment; "
                             "switchboard.js, the default, or \"\" to go back)")
    setter.set_defaults(func=cmd_sources_set)

    dests = sub.add_parser("destinations", help="manage a source's destinations").add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    add = dests.add_parser("add", help="connect a catalog destination to a source")
    add.add_argument("source", help="source id, name, slug or write key")
    add.add_argument("slug", help="catalog slug, e.g. google_analytics_4")
    add.add_argument("--mode", choices=["device", "cloud"], help="default: the destination's default mode")
    add.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting (JSON values allowed); repeat")
    add.add_argument("--disabled", action="store_true", help="add it switched off")
    add.set_defaults(func=cmd_destinations_add)
    dlist = dests.add_parser("list", help="list a source's destinations (secrets masked)")
    dlist.add_argument("source")
    dlist.add_argument("--json", action="store_true", help="print JSON")
    dlist.set_defaults(func=cmd_destinations_list)

    tokens = sub.add_parser("tokens", help="admin API tokens").add_subparsers(
        dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    tcreate = tokens.add_parser("create", help="create an admin API token and print it (shown once)")
    tcreate.add_argument("--name", default="cli", help="a label for the token")
    tcreate.set_defaults(func=cmd_tokens_create)

    from server import worker
    from server.app import PLANES

    worker.add_commands(sub)
    for plane in PLANES:  # the planes' own subcommands (worker, replay, warehouse sync)
        if hasattr(plane, "add_commands"):
            plane.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from server.errors import ApiError

    try:
        args.func(args)
    except CliError as exc:
        print(f"switchboard: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiError as exc:  # the shared service layer's validation errors (e.g. an empty name)
        print(f"switchboard: error: {exc.field + ': ' if exc.field else ''}{exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
