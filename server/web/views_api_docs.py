"""API docs for people: ``/api/docs`` renders the admin API's OpenAPI document with a vendored
Swagger UI (static/vendor/swagger-ui, Apache-2.0, from the npm package swagger-ui-dist), and
``/api/docs/openapi.json`` serves the document itself to a signed-in browser session (the API's
own ``/api/v1/openapi.json`` wants a bearer token, so a browser link to it answered 401).

Both are behind sign-in like every page. The page runs under the web app's CSP: the Swagger UI
bundle and its initializer (static/api-docs.js) are same-origin scripts, the spec URL reaches
the initializer in a JSON block.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.openapi import openapi_document
from server.errors import json_response
from server.web.render import render
from server.web.security_headers import secure
from server.web.sessions import page

SPEC_URL = "/api/docs/openapi.json"


@page
async def docs_page(request: Request) -> Response:
    data = {"spec_url": SPEC_URL, "api_spec_url": "/api/v1/openapi.json"}
    return await render(request, "api_docs.html", data, title="API docs")


@page
async def docs_spec(request: Request) -> Response:
    return secure(json_response(openapi_document(request.app)))


def routes() -> list[Route]:
    return [
        Route("/api/docs", docs_page, methods=["GET"]),
        Route(SPEC_URL, docs_spec, methods=["GET"]),
    ]
