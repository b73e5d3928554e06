"""The privacy plane: regulations (delete and suppress users), retention, the governance log's
API, and the store's disk use. See docs/privacy.md.

Modules: ``api`` (REST) · ``runner`` (background deletions and retention) · ``metrics``
(``/metrics`` families) · ``commands`` (``switchboard regulate``). The SQL is in
``server/store/{regulations,erasure,governance,disk}.py``; the collector applies the suppression
list itself (``server/store/regulations.SuppressionList``).

The door: ``routes``, ``startup``, ``shutdown``, ``add_commands``. The runner cleans warehouses
through ``state.erasers`` (callables the assemblers hand over: the warehouse plane's
``erase_users``), so this plane imports no other.
"""

from __future__ import annotations

from server.privacy import api
from server.privacy.commands import add_commands
from server.privacy.metrics import PrivacyCollector

__all__ = ["routes", "startup", "shutdown", "add_commands"]


def routes(config):
    return api.routes(config)


async def startup(app) -> None:
    state = app.state
    state.metrics_collectors = [*getattr(state, "metrics_collectors", []), PrivacyCollector(state.engine)]
    state.privacy_runner = None
    if not state.config.delivery_workers:
        return
    from server.privacy.runner import Runner

    state.privacy_runner = Runner(state.engine, state.catalog, state.config, list(getattr(state, "erasers", []))).start()


async def shutdown(app) -> None:
    runner = getattr(app.state, "privacy_runner", None)
    if runner is not None:
        app.state.privacy_runner = None
        await runner.stop()
