"""The admin plane: the REST API under /api/v1 (``api``). Its validated writes live in the kernel's
``server.api.service``, which the web app and the CLI share.

The door: ``routes``.
"""

from server.admin import api, audit, filters

__all__ = ["routes"]


def routes(config) -> list:
    return [*api.routes(config), *filters.routes(config), *audit.routes(config)]
