"""The ready-made demo: a "Demo site" source seeded on an empty database, and /demo, a page
that carries that source's snippet (inline, as a site pastes it) with a few buttons to send events.
/demo exists only with ``switchboard serve --demo`` (``config.demo``)."""

from __future__ import annotations

import html

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server.cdn import render_snippet
from server.store import workspace

DEMO_SOURCE_NAME = "Demo site"


def seed_demo(engine: Engine) -> dict | None:
    """Create the demo source when the database has no source yet; return it, or None."""
    if workspace.count_sources(engine):
        return None
    return workspace.create_source(engine, DEMO_SOURCE_NAME, actor="make run")


def demo_source(engine: Engine) -> dict | None:
    rows = workspace.list_sources(engine)
    return next((s for s in rows if s["name"] == DEMO_SOURCE_NAME), rows[0] if rows else None)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard demo page</title>
<script>
{snippet}
</script>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
button {{ font: inherit; padding: .4rem .8rem; margin: .2rem; }}
code {{ background: #f3f3f3; padding: .1rem .3rem; }}
</style>
</head>
<body>
<h1>Switchboard demo page</h1>
<p>This page carries the snippet of the source <strong>{name}</strong> (write key <code>{write_key}</code>).
It loads the bundle from this server and sends a page view. Use the buttons to send more events,
then look for them in the source's debugger or in <code>GET /api/v1/sources/{source_id}/events</code>.</p>
<p>
<button id="track-product" type="button">Track “Product Added”</button>
<button id="track-order" type="button">Track “Order Completed”</button>
<button id="identify" type="button">Identify as demo-user</button>
<button id="reset" type="button">Reset identity</button>
</p>
<script>
document.getElementById("track-product").onclick = function () {{
  analytics.track("Product Added", {{product_id: "sku-1", name: "Demo mug", price: 12.5, quantity: 1}});
}};
document.getElementById("track-order").onclick = function () {{
  analytics.track("Order Completed", {{order_id: "o-" + Date.now(), total: 25, revenue: 25, currency: "EUR",
    products: [{{product_id: "sku-1", name: "Demo mug", price: 12.5, quantity: 2}}]}});
}};
document.getElementById("identify").onclick = function () {{
  analytics.identify("demo-user", {{email: "demo@example.com", name: "Demo User"}});
}};
document.getElementById("reset").onclick = function () {{ analytics.reset(); }};
</script>
</body>
</html>
"""


async def demo_page(request: Request) -> Response:
    source = await run_in_threadpool(demo_source, request.app.state.engine)
    if source is None:
        return HTMLResponse("<p>No source yet: run <code>switchboard init</code>.</p>", status_code=404)
    config = request.app.state.config
    return HTMLResponse(
        PAGE.format(
            # The snippet inline, as a site pastes it (tojson inside it keeps it HTML-safe).
            snippet=render_snippet(config, source["write_key"]),
            name=html.escape(source["name"]),
            write_key=html.escape(source["write_key"]),
            source_id=source["id"],
        )
    )


def routes(config) -> list[Route]:
    # Only `switchboard serve --demo` (make run) serves it: the page shows a write key and every
    # visit adds events, so a normal install answers /demo with the JSON 404 of any unknown path.
    return [Route("/demo", demo_page, methods=["GET"])] if config.demo else []
    return [Route("/demo", demo_page, methods=["GET"])]


def egress_lines(config) -> list[str]:
    """The tour's word on the egress rules: why a webhook to a receiver on this machine is
    refused, and how to allow it (docs/security.md)."""
    if config.allow_private_egress:
        return ["  Egress:        destinations may reach internal addresses (SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true)"]
    return ["  Local webhook: URLs on this machine or your network (127.0.0.1, localhost, 10.x, 192.168.x …)",
            "                 are refused; to try one, run SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true make run"]
