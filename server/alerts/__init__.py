"""The alerts plane: rules on delivery and ingest health, evaluated in the background, that fire
once and resolve once and tell someone (docs/alerts.md).

Modules: ``api`` (REST: ``/api/v1/alerts``) · ``evaluator`` (the loop, one per worker process,
every ``SWITCHBOARD_ALERT_INTERVAL_S``) · ``conditions`` (what each kind measures) · ``notify``
(Slack/Webhooks destinations through the delivery plane's sender, or SMTP). Rules are validated
in ``server/api/alerts.py`` (shared with the web page, ``server/web/views_alerts.py``); the SQL is
in ``server/store/alerts.py``.

The door: ``routes``, ``startup``, ``shutdown``. The evaluator runs wherever delivery workers
run (``switchboard serve`` with ``SWITCHBOARD_DELIVERY_WORKERS``, and ``switchboard worker``), as
its own task, beside the delivery service rather than inside its loop.
"""

from __future__ import annotations

from server.alerts import api

__all__ = ["routes", "startup", "shutdown"]


def routes(config):
    return api.routes(config)


async def startup(app) -> None:
    state = app.state
    state.alert_evaluator = None
    if not state.config.delivery_workers:
        return
    from server.alerts.evaluator import Evaluator

    state.alert_evaluator = Evaluator(state.engine, state.catalog, state.config).start()


async def shutdown(app) -> None:
    evaluator = getattr(app.state, "alert_evaluator", None)
    if evaluator is not None:
        app.state.alert_evaluator = None
        await evaluator.stop()
