"""Planes meet only through their declared doors (docs/architecture.md), checked on the source.

- The kernel (config, errors, rules, api/, cli_support, cli_access), the store, the catalog and the
  destinations import no plane.
- A plane imports the kernel, the store, the catalog/destinations and its own modules.
- The web app may also use the read-outs of the bundle, delivery and warehouse planes, by name
  from their doors (``from server.delivery import delivery_overview``), never their insides;
  the demo page may use the bundle plane's door (the snippet); the alerts plane sends through the
  delivery plane's door (`send_sample`).
- The assemblers (app.py, cli.py, worker.py) use doors only.
- Nothing in server/ imports cli.py (the console script is its only user).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLANES = {"cdn", "ingest", "delivery", "warehouse", "admin", "web", "health", "demo", "scaleout", "privacy", "alerts"}
SHARED = {"config", "errors", "rules", "fql", "api", "cli_support", "cli_access", "store", "catalog", "destinations"}
ASSEMBLERS = {"app", "cli", "worker"}
READOUTS = {"web": {"cdn", "delivery", "warehouse"}, "demo": {"cdn"}, "alerts": {"delivery"}}


def imports_of(source: str, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``source``, function-level ones included."""
    package = module if module.endswith("__init__") else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from server import cdn` imports the module server.cdn; `from server.cdn import x`, server.cdn.
            found += [(node.lineno, f"{base}.{a.name}" if base == "server" else base) for a in node.names]
    return [(line, name) for line, name in found if name == "server" or name.startswith("server.")]


def violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (dotted module names), or None."""
    if imported in ("server.cli", "server.__main__"):
        return "nothing imports cli.py but the entry point"
    mine, theirs = importer.split(".")[1], imported.split(".")[1] if "." in imported else ""
    door = imported == f"server.{theirs}"
    if theirs == mine or theirs in SHARED:
        return None
    if theirs in ASSEMBLERS:
        if mine in ASSEMBLERS:
            return None
        return f"{imported} assembles the planes; no plane or kernel module may import it"
    # theirs is a plane
    if mine in SHARED:
        return f"the kernel, store and catalog import no plane ({imported})"
    if mine in ASSEMBLERS:
        return None if door else f"assemblers use plane doors only, not {imported}"
    if theirs in READOUTS.get(mine, ()):
        return None if door else f"{mine} may use {theirs}'s read-outs by name from its door, not {imported}"
    return f"plane {mine} imports plane {theirs} ({imported})"


def all_violations() -> list[str]:
    problems = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, imported in imports_of(path.read_text(encoding="utf-8"), module):
            why = violation(module, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    return problems


def test_planes_meet_only_through_their_doors():
    assert all_violations() == []


def test_every_top_level_module_is_classified():
    names = {p.stem for p in (ROOT / "server").iterdir() if p.suffix == ".py" or (p.is_dir() and p.name != "__pycache__")}
    assert names - {"templates"} <= PLANES | SHARED | ASSEMBLERS, names - PLANES - SHARED - ASSEMBLERS


def test_the_rules_catch_what_they_forbid():
    inside = imports_of("from server.delivery.stats import destination_stats\nfrom server import warehouse\n",
                        "server.web.views")
    assert [violation("server.web.views", m) for _, m in inside] == [
        "web may use delivery's read-outs by name from its door, not server.delivery.stats", None]
    assert violation("server.ingest.collector", "server.delivery") == "plane ingest imports plane delivery (server.delivery)"
    assert violation("server.store.events", "server.cdn") is not None
    assert violation("server.delivery.commands", "server.cli") is not None
    assert violation("server.app", "server.cdn.routes") is not None
    relative = imports_of("from .routes import routes\nfrom ..delivery import sender\n", "server.cdn.__init__")
    assert [m for _, m in relative] == ["server.cdn.routes", "server.delivery"]
    assert violation("server.cdn.__init__", "server.delivery") is not None
