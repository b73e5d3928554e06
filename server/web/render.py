"""Rendering: one Jinja2 environment, and every page's JSON twin.

A view builds ``data`` — a JSON-ready dict with everything the page shows — and calls
``render``. ``?format=json`` answers with ``data`` itself, so the JSON twin cannot drift from the
page. Templates get ``data`` plus the chrome (user, CSRF token, flash message).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.errors import json_response
from server.web.security_headers import secure
from server.web.sessions import load_session, save_session

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

# A few calm colours for monogram tiles (classes tile-c0..tile-c7 in static/app.css: the CSP allows
# no inline style), picked by a hash of the slug so a tile keeps its colour.
_TILE_COLOURS = 8


def monogram(name: str) -> str:
    words = [w for w in name.replace("-", " ").split() if w[:1].isalnum()]
    letters = "".join(w[0] for w in words[:2]) if len(words) > 1 else name[:2]
    return letters.upper()


def tile_colour(slug: str) -> str:
    """The class that colours the slug's tile."""
    return f"tile-c{hashlib.sha1(slug.encode()).digest()[0] % _TILE_COLOURS}"


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["monogram"] = monogram
    env.filters["tile_colour"] = tile_colour
    env.filters["when"] = lambda iso: (iso or "")[:19].replace("T", " ") + (" UTC" if iso else "")
    env.filters["kb"] = lambda n: "—" if n is None else (f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B")
    return env


ENV = _env()


def wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json"


async def render(
    request: Request, template: str, data: dict[str, Any], *, status: int = 200, title: str = "", **extra: Any
) -> Response:
    if wants_json(request):
        return json_response(data, status)
    session = await load_session(request)
    flash = session.drop("f")
    html = ENV.get_template(template).render(
        data=data, user=session.user, role=session.role, csrf_token=session.csrf, flash=flash, title=title, path=request.url.path,
        **extra,
    )
    return await save_session(request, secure(HTMLResponse(html, status_code=status)))
