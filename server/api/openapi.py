"""OpenAPI 3.1 document for every /api/v1 route, built from the app's own routing table.

Walking the live routes (instead of a hand-kept list) means a route added by any plane is
described as soon as it exists; its summary is the endpoint's docstring.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from server.api.auth import required_role

_PARAM = re.compile(r"{(\w+)(?::(\w+))?}")
_ERROR = {
    "description": "Error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}


def _api_routes(app) -> list[Route]:
    found = []

    def walk(routes):
        for route in routes:
            if isinstance(route, Route) and route.path.startswith("/api/v1/"):
                found.append(route)
            elif hasattr(route, "routes"):
                walk(route.routes)

    walk(app.routes)
    return found


def _success(endpoint) -> dict[str, Any]:
    # Endpoints that answer 201 or 204 say so with ``@answers(status)`` (see api.py).
    status = getattr(endpoint, "success_status", 200)
    if status == 204:
        return {"204": {"description": "No Content"}}
    return {str(status): {"description": "Created" if status == 201 else "OK", "content": {"application/json": {}}}}


def answers(status: int):
    """Mark an endpoint's success status for this document (put it under ``@admin_endpoint``)."""

    def mark(endpoint):
        endpoint.success_status = status
        return endpoint

    return mark


def openapi_document(app) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in _api_routes(app):
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if kind == "int" else "string"},
            }
            for name, kind in _PARAM.findall(route.path)
        ]
        doc = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "summary": doc,
                "operationId": f"{method.lower()}_{route.name}",
                "security": [{"bearer": []}],
                # The least role that may call it (server/api/auth.py; docs/admin-api.md#roles).
                "x-switchboard-role": required_role(route.endpoint, method),
                "responses": {
                    **_success(route.endpoint),
                    "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "422": _ERROR,
                },
            }
            # Query parameters an endpoint declares as [(name, type, description)] (e.g. server/admin/audit.py).
            query = [{"name": name, "in": "query", "required": False, "description": text, "schema": {"type": kind}}
                     for name, kind, text in getattr(route.endpoint, "query_parameters", [])]
            if params or query:
                operation["parameters"] = params + query
            if method in ("POST", "PATCH", "PUT"):
                operation["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Switchboard admin API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "message", "error"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                        "error": {"type": "object"},
                    },
                }
            },
        },
    }
