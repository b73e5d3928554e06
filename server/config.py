"""Settings from the environment (``SWITCHBOARD_*``), gathered in one frozen dataclass.

Every setting is read, parsed and checked here, once, at start-up. An invalid value raises
``ConfigError`` whose message names the variable, and the CLI turns that into one line on
stderr and exit status 2 — a server that starts with a half-understood configuration is worse
than one that refuses to start.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "SWITCHBOARD_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A SWITCHBOARD_* variable holds a value we cannot use."""


def _url_path(value: str) -> str:
    if not value.startswith("/") or value.endswith("/") and value != "/" or "//" in value:
        raise ValueError("must be an absolute path like /ajs, without a trailing slash")
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise ValueError("must be a port number between 1 and 65535")
    return port


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be zero or a positive whole number")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be a positive whole number")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be a positive number")
    return number


def _database_url(value: str) -> str:
    if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
        raise ValueError("must start with sqlite:/// or postgresql+psycopg://")
    return value


def _public_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) origin such as https://analytics.example.com")
    return value.rstrip("/")


def _publish_webhook(url: str, allow_private_egress: bool) -> None:
    """An absolute http(s) URL whose host is not internal (the egress rules destinations follow,
    server/destinations/egress.py) unless internal addresses are allowed. Names are not resolved."""
    from server.destinations.egress import ALLOW_HINT, host_refusal, url_host

    problem = "must be an absolute http(s) URL such as https://hooks.example.com/purge"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0  # .port raises ValueError on a bad port
    except ValueError:
        raise ValueError(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(problem)
    host = url_host(url)
    why = host_refusal(unquote(host)) if host and not allow_private_egress else None
    if why:
        raise ValueError(f"{host} is an internal address ({why}); {ALLOW_HINT}")


def _role(value: str) -> str:
    if value not in ("all", "edge"):
        raise ValueError("must be all or edge")
    return value


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return level


def _setting(env: str, default: str, parse: Callable[[str], object] = str, doc: str = ""):
    # The dataclass default is the parsed value (so Config(...) in tests is typed right);
    # the raw text is kept for from_env and for the README's table.
    parsed = parse(default) if default else default
    return field(default=parsed, metadata={"env": env, "parse": parse, "doc": doc, "raw": default})


@dataclass(frozen=True)
class Config:
    """The whole server configuration. ``Config.from_env()`` builds it; tests build it directly."""

    database_url: str = _setting(
        "DATABASE_URL", "sqlite:///./switchboard.db", _database_url,
        "Where everything is stored: `sqlite:///path.db` (embedded) or `postgresql+psycopg://user:pw@host/db`.")
    host: str = _setting("HOST", "127.0.0.1", str, "Address `switchboard serve` listens on.")
    port: int = _setting("PORT", "8000", _port, "Port `switchboard serve` listens on.")
    public_url: str = _setting(
        "PUBLIC_URL", "", _public_url,
        "Origin that snippets, bundles and the settings document point browsers at. Empty: `http://HOST:PORT`.")
    admin_token: str = _setting(
        "ADMIN_TOKEN", "", str, "Optional bootstrap admin API token, accepted in addition to tokens in the database.")
    secret_key: str = _setting(
        "SECRET_KEY", "", str, "Signs web sessions. Empty: generated on first run and kept in the database.")
    log_level: str = _setting("LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    bundle_path: str = _setting(
        "BUNDLE_PATH", "/analytics.js/v1", _url_path,
        "Path prefix of the bundle (`{prefix}/{writeKey}/analytics.min.js`). Rename it to dodge ad-blocker path rules.")
    collector_prefix: str = _setting(
        "COLLECTOR_PREFIX", "/v1", _url_path,
        "Extra path prefix the Tracking API also answers under (it always answers under `/v1`).")
    bundle_max_age: int = _setting(
        "BUNDLE_MAX_AGE", "60", _non_negative_int, "Seconds browsers and CDNs may reuse a bundle (`max-age`).")
    bundle_stale_while_revalidate: int = _setting(
        "BUNDLE_STALE_WHILE_REVALIDATE", "3600", _non_negative_int,
        "Seconds a stale bundle may be served while it is refetched.")
    bundle_cache_mb: int = _setting(
        "BUNDLE_CACHE_MB", "128", _positive_int,
        "Memory (MB) each server process keeps built bundles in (LRU by bytes); misses beyond it read the stored build.")
    trust_proxy: bool = _setting(
        "TRUST_PROXY", "false", _bool, "Take the client address from `X-Forwarded-For` (only behind your own proxy).")
    rate_limit: int = _setting(
        "RATE_LIMIT", "0", _non_negative_int, "Tracking API requests per second per write key; 0 turns it off.")
    dedupe_window: float = _setting(
        "DEDUPE_WINDOW", "86400", _positive_float,
        "Seconds a messageId is remembered per source: a repeat within the window is acknowledged, not stored again.")
    retry_window: float = _setting(
        "RETRY_WINDOW", "14400", _positive_float,
        "Seconds a failing cloud-mode delivery is retried before it becomes a dead letter.")
    allow_private_egress: bool = _setting(
        "ALLOW_PRIVATE_EGRESS", "false", _bool,
        "Let destinations reach loopback, private, link-local and other internal addresses (internal webhooks, "
        "a local test receiver). Off: such URLs are refused when saved and when connecting.")
    replay_rate: float = _setting(
        "REPLAY_RATE", "200", _positive_float,
        "Events per second a history replay (`POST /api/v1/destinations/{id}/replay`) releases for delivery, "
        "over all replays, so live traffic keeps its pace (docs/delivery.md).")
    delivery_workers: bool = _setting(
        "DELIVERY_WORKERS", "true", _bool, "Run delivery workers inside `switchboard serve`.")
    publish_dir: str = _setting(
        "PUBLISH_DIR", "", str,
        "Directory the server writes every enabled source's bundle, settings document and snippet to (with "
        "`.gz`/`.br` siblings) for nginx or a CDN to serve (docs/deployment.md). Empty: no static publish.")
    publish_command: str = _setting(
        "PUBLISH_COMMAND", "", str,
        "Command run after each static publish, with the changed write keys as arguments (a CDN purge, "
        "`rclone sync`); failures are logged.")
    publish_webhook: str = _setting(
        "PUBLISH_WEBHOOK", "", str,
        "http(s) URL that gets a JSON POST (`keys`, `paths`, `published_at`) after each static publish that "
        "changed something, for a CDN purge; retried on 5xx and connection errors, failures are logged "
        "(docs/deployment.md). Internal addresses need `SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true`.")
    publish_webhook_secret: str = _setting(
        "PUBLISH_WEBHOOK_SECRET", "", str,
        "Signs the publish webhook's body: `X-Switchboard-Signature: sha256=<hex HMAC-SHA256>`. Empty: unsigned.")
    role: str = _setting(
        "ROLE", "all", _role,
        "What `switchboard serve` runs: `all` (everything) or `edge` (bundles, collector, admin API, web app; "
        "no delivery workers or warehouse loads — run `switchboard worker` for those).")
    admin_user: str = _setting("ADMIN_USER", "admin", str, "User name of the web app's admin account.")
    admin_password: str = _setting(
        "ADMIN_PASSWORD", "", str, "Password of the admin account on first run. Empty: generated and printed once.")
    metrics_token: str = _setting(
        "METRICS_TOKEN", "", str, "Bearer token for `/metrics`. Empty: `/metrics` needs an admin token.")
    max_header_bytes: int = _setting(
        "MAX_HEADER_BYTES", "16384", _positive_int,
        "Largest request line plus headers, in bytes; more gets 431 `headers_too_large` (docs/security.md).")
    header_timeout: float = _setting(
        "HEADER_TIMEOUT", "10", _positive_float,
        "Seconds a connection may take to send a request's line and headers; then it is closed.")
    body_timeout: float = _setting(
        "BODY_TIMEOUT", "30", _positive_float, "Seconds a request may take to send its body; then it is closed.")
    keep_alive_timeout: float = _setting(
        "KEEP_ALIVE_TIMEOUT", "5", _positive_float, "Seconds an idle keep-alive connection is kept open.")
    max_connections: int = _setting(
        "MAX_CONNECTIONS", "10000", _positive_int,
        "Open connections per process; beyond it requests get 503 `too_many_connections` and the connection "
        "is closed. Lowered to fit the process's file descriptor limit.")
    demo: bool = _setting(
        "DEMO", "false", _bool, "Serve the demo page `/demo` (what `switchboard serve --demo` turns on).")
    sqlite_busy_timeout: float = _setting(
        "SQLITE_BUSY_TIMEOUT", "5", _positive_float,
        "Seconds a write waits for a SQLite file another connection holds locked before it fails "
        "(the request then gets a 503 with `Retry-After`).")
    commit_queue_events: int = _setting(
        "COMMIT_QUEUE_EVENTS", "50000", _positive_int,
        "Events that may wait for the collector's group commit; beyond it requests get a 503 with `Retry-After`.")
    commit_queue_mb: int = _setting(
        "COMMIT_QUEUE_MB", "32", _positive_int,
        "Megabytes of request bodies that may wait for the collector's group commit; beyond it, a 503.")

    event_retention_days: int = _setting(
        "EVENT_RETENTION_DAYS", "30", _non_negative_int,
        "Days the event log keeps an event; older ones are pruned in the background once every job for them "
        "is delivered (0 keeps everything). See docs/privacy.md.")
    dead_letter_retention_days: int = _setting(
        "DEAD_LETTER_RETENTION_DAYS", "30", _non_negative_int,
        "Days a dead letter (a job that gave up) is kept for replay before it is pruned (0 keeps them).")
    audit_retention_days: int = _setting(
        "AUDIT_RETENTION_DAYS", "365", _non_negative_int,
        "Days the audit log keeps an entry; older ones are pruned with the event log (0 keeps them all).")
    regulation_batch_size: int = _setting(
        "REGULATION_BATCH_SIZE", "500", _positive_int,
        "Events a user deletion (regulation) looks at per transaction; smaller batches hold locks for less time.")

    alert_interval_s: float = _setting(
        "ALERT_INTERVAL_S", "20", _positive_float,
        "Seconds between evaluations of the alert rules in each worker process (docs/alerts.md).")
    smtp_host: str = _setting("SMTP_HOST", "", str, "SMTP server for alert e-mails. Empty: e-mail alerts fail.")
    smtp_port: int = _setting("SMTP_PORT", "587", _port, "Port of the SMTP server.")
    smtp_user: str = _setting("SMTP_USER", "", str, "SMTP user name. Empty: no login.")
    smtp_password: str = _setting("SMTP_PASSWORD", "", str, "SMTP password.")
    smtp_from: str = _setting("SMTP_FROM", "switchboard@localhost", str, "Sender address of alert e-mails.")
    smtp_starttls: bool = _setting("SMTP_STARTTLS", "true", _bool, "Upgrade the SMTP connection with STARTTLS.")

    def __post_init__(self) -> None:
        # Checks that need two settings (the webhook URL and the egress rule) run here, for
        # from_env and for Config(...) alike.
        if self.publish_webhook:
            try:
                _publish_webhook(self.publish_webhook, self.allow_private_egress)
            except ValueError as exc:
                raise ConfigError(f"{PREFIX}PUBLISH_WEBHOOK={self.publish_webhook!r} is invalid: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Config":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.metadata["env"]
            raw = environ.get(name, f.metadata["raw"])
            if raw == "" and f.metadata["raw"] == "":
                values[f.name] = ""
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{name}={raw!r} is invalid: {exc}") from None
        values.update(overrides)
        return cls(**values)

    @property
    def origin(self) -> str:
        """The public origin browsers use (scheme://host[:port]), without a trailing slash."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README's table is checked against it."""
    return [
        (PREFIX + f.metadata["env"], f.metadata["raw"], f.metadata["doc"]) for f in dataclasses.fields(Config)
    ]
