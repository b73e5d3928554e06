"""The admin plane: the REST API under /api/v1 (``api``). Its validated writes live in the kernel's
``server.api.service``, which the web app and the CLI share.

The door: ``routes`` and ``add_commands`` (``switchboard users``, ``switchboard tokens``).
"""

from server.admin import access, api, audit, filters
from server.admin.commands import add_commands

__all__ = ["routes", "add_commands"]


def routes(config) -> list:
    return [*api.routes(config), *filters.routes(config), *access.routes(config), *audit.routes(config)]
