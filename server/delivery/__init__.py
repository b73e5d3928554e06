"""Cloud-mode delivery plane: fan-out from the event log to cloud destinations, retries, dead
letters, replay, stats and ``/metrics``.

``startup`` runs a ``DeliveryService`` inside ``switchboard serve`` when
``SWITCHBOARD_DELIVERY_WORKERS`` is true (the default); ``switchboard worker`` runs the same
service without the HTTP server. Any number of them may share one database.

The door: ``routes``, ``startup``, ``shutdown``, ``add_commands`` (``switchboard replay``) and
the web app's read-outs (``delivery_overview``, ``replay_dead_letters``, ``event_deliveries``,
``send_sample``, ``start_replay`` and ``history_replays``: history replay).
"""

from __future__ import annotations

from starlette.applications import Starlette

from server.delivery.commands import add_commands
from server.delivery.history import history_replays, start_replay
from server.delivery.readouts import (
    dead_letter_detail, delivery_overview, event_deliveries, replay_dead_letters, send_sample,
)

__all__ = ["routes", "startup", "shutdown", "add_commands",
           "dead_letter_detail", "delivery_overview", "event_deliveries", "replay_dead_letters", "send_sample",
           "start_replay", "history_replays"]


def routes(config) -> list:
    from server.delivery import api, history, metrics

    return [*api.routes(config), *history.routes(config), *metrics.routes(config)]


async def startup(app: Starlette) -> None:
    config = app.state.config
    if not config.delivery_workers:
        app.state.delivery = None
        return
    from server.delivery.worker import DeliveryService

    options = getattr(app.state, "delivery_options", {})  # `switchboard worker`'s --concurrency etc.
    app.state.delivery = await DeliveryService(
        app.state.engine, app.state.catalog, retry_window=config.retry_window,
        allow_private_egress=config.allow_private_egress, replay_rate=config.replay_rate, **options
    ).start()


async def shutdown(app: Starlette) -> None:
    service = getattr(app.state, "delivery", None)
    if service is not None:
        await service.stop()
        app.state.delivery = None
