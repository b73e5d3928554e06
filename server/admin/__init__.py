"""The admin plane: the REST API under /api/v1 (``api``). Its validated writes live in the kernel's
``server.api.service``, which the web app and the CLI share.

The door: ``routes``.
"""

from server.admin.api import routes

__all__ = ["routes"]
