"""Publish webhook: after a static publish pass that wrote or removed files, POST what changed to
``SWITCHBOARD_PUBLISH_WEBHOOK`` so a CDN purge (or an object-store sync) can follow without a
shell command on the server (docs/deployment.md, "Publish webhook").

The body is JSON: ``{"keys": [write keys], "paths": [URL paths written or removed],
"published_at": ISO 8601 UTC}``, sent with ``Content-Type: application/json``,
``User-Agent: switchboard-publish`` and, when ``SWITCHBOARD_PUBLISH_WEBHOOK_SECRET`` is set,
``X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the raw body with the secret>``.

Why a thread of its own: the publish thread only hands the change over (``notify`` takes a lock
for a moment and returns), so a slow or hanging CDN API never holds back the next publish's
files. Changes that arrive while a call is in flight or backing off are merged into one pending
call (keys and paths are sets; ``published_at`` is the latest pass), so memory stays bounded
however long the receiver is down.

Retries: a connection error, a timeout or a 5xx is retried after each delay in ``backoff``;
a 4xx is the receiver refusing the call (a wrong URL or secret) and, like a redirect (not
followed), is not retried. Every
failure is logged with the URL's scheme, host and path only (no query, no user info), never
the secret; the next publish calls again.

The URL was checked when the configuration was loaded (``server/config.py``: http(s) only,
internal addresses refused unless ``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
import orjson

log = logging.getLogger("switchboard.publish")
USER_AGENT = "switchboard-publish"
SIGNATURE_HEADER = "X-Switchboard-Signature"
TIMEOUT_S = 10.0
BACKOFF_S = (1.0, 4.0, 16.0)  # three retries after the first attempt


def sign(secret: str, body: bytes) -> str:
    """The ``X-Switchboard-Signature`` value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def redacted(url: str) -> str:
    """``url`` without user info, query or fragment, for logs (a token may hide in either)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PublishWebhook:
    """Calls one URL after publishes, from a daemon thread; ``notify`` never blocks."""

    def __init__(self, url: str, secret: str = "", *, timeout: float = TIMEOUT_S,
                 backoff: tuple[float, ...] = BACKOFF_S):
        self.url, self.secret, self.timeout, self.backoff = url, secret, timeout, backoff
        self.delivered = 0  # calls the receiver accepted (2xx)
        self.failed = 0  # calls given up on
        self._keys: dict[str, None] = {}  # pending, in order of first appearance
        self._paths: dict[str, None] = {}
        self._published_at = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="publish-webhook", daemon=True)
        self._thread.start()

    def notify(self, keys: Iterable[str], paths: Iterable[str]) -> None:
        """Queue a call for this publish pass (merged with one still waiting to be sent)."""
        with self._cond:
            self._keys.update(dict.fromkeys(keys))
            self._paths.update(dict.fromkeys(paths))
            self._published_at = _now()
            self._cond.notify()

    def close(self, wait: float = 2.0) -> None:
        """Stop: a call waiting for a retry is dropped; one in flight gets ``wait`` seconds."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(wait)

    def _take(self) -> bytes | None:
        with self._cond:
            while not self._keys and not self._paths and not self._stop.is_set():
                self._cond.wait()
            if self._stop.is_set():
                return None
            body = orjson.dumps({"keys": list(self._keys), "paths": list(self._paths),
                                 "published_at": self._published_at})
            self._keys, self._paths = {}, {}
            return body

    def _run(self) -> None:
        # trust_env: HTTPS_PROXY / NO_PROXY apply, as they do to delivery (docs/deployment.md).
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while True:
                body = self._take()
                if body is None:
                    return
                try:
                    self.deliver(client, body)
                except Exception:  # never let the thread die: the next publish calls again
                    self.failed += 1
                    log.exception("publish webhook to %s failed", redacted(self.url))

    def deliver(self, client: httpx.Client, body: bytes) -> bool:
        """POST ``body``, retrying connection errors, timeouts and 5xx; True once accepted."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        for attempt, delay in enumerate((*self.backoff, None), start=1):
            try:
                status = client.post(self.url, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                why = f"{type(exc).__name__}: {str(exc).replace(self.url, redacted(self.url))}"
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return True
                why = f"status {status}"
                if status < 500:  # refused (4xx) or redirected (not followed): retrying would not help
                    self.failed += 1
                    log.warning("publish webhook to %s refused (%s); not retried", redacted(self.url), why)
                    return False
            if delay is None:
                break
            log.warning("publish webhook to %s failed (%s, attempt %d); retrying in %.0f s",
                        redacted(self.url), why, attempt, delay)
            if self._stop.wait(delay):
                break
        self.failed += 1
        log.warning("publish webhook to %s failed (%s); giving up until the next publish", redacted(self.url), why)
        return False
