"""The ingest plane: the whole Tracking API, one concept per module; ``collector`` wires them to routes.

- ``body``: read a request body within its size limit (gzip too) and parse it as JSON.
- ``validate``: the Tracking API's rules for one event (type, ids, sizes) → 400s that say why.
- ``normalise``: what the server adds or fixes (messageId, receivedAt, skew-corrected timestamp,
  batch-level context/integrations/sentAt, context.ip).
- ``keys``: write key → source, cached in process, invalidated by settings changes.
- ``ratelimit``: a token bucket per write key.
- ``cors``: CORS headers for every answer and the preflight.
- ``writer``: the group-commit writer (one transaction for everything pending).
- ``asgi``: the request and answer objects of the hot path (raw headers, prepared bytes).
- ``client_metrics``: counts what browsers post to ``/v1/m``.
- ``early``: expands the snippet's early send (``/v1/e``) into the event the bundle would build.
- ``kept_cookies``: server-set cookies (``/v1/keep``): sets the visitor's id cookies again.
- ``stats``: Prometheus counters for accepted, duplicate and refused events.
- ``events_api``: the admin read API over stored events.
- ``depth``: parses a body, refusing one nested deeper than 64 levels: exact, and cheap whatever its shape.
- ``off_loop``: the thread that decompresses and parses large bodies, away from the event loop.
- ``rejected``: refused batch items in the admin API and ``/metrics``.

The door: ``routes``, ``startup`` and ``shutdown`` (from ``collector``).
"""

from server.ingest.collector import routes, shutdown, startup

__all__ = ["routes", "startup", "shutdown"]
