"""The ``library_name`` source setting: what the bundle writes as ``context.library.name``.

By default events say ``switchboard.js`` (they were sent by Switchboard's core, not by Segment's
library). A site that moves from Segment may have reports, warehouse views or destination filters
on ``context.library.name = 'analytics.js'``; setting ``library_name`` to ``analytics.js`` keeps
them working. The version stays ours (``context.library.version``). The value reaches the bundle
only through ``tojson`` (server/bundles.py), and it is validated here once for every door (admin
API, web app, CLI): short, printable, no markup.
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT = "switchboard.js"
MAX_LENGTH = 40
# Names such libraries use: analytics.js, analytics-next, @segment/analytics-next, switchboard.js.
_NAME = re.compile(r"^[A-Za-z0-9@][A-Za-z0-9@._/-]*$")


class LibraryNameError(ValueError):
    pass


def clean(value: Any) -> str | None:
    """The name to store: None (or "", or the default) means the default; otherwise a checked name."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise LibraryNameError("library_name must be text or null")
    value = value.strip()
    if value in ("", DEFAULT):
        return None
    if len(value) > MAX_LENGTH or not _NAME.fullmatch(value):
        raise LibraryNameError(
            f"library_name must be at most {MAX_LENGTH} characters of letters, digits and @ . _ / - "
            "(for example analytics.js)")
    return value


def effective(stored: str | None) -> str:
    return stored or DEFAULT
