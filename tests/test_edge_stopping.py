"""server/api/edge/stopping.py: what runs when `switchboard serve` starts to stop (the live case,
a debugger stream ending at SIGTERM, is in tests/test_web_debugger.py)."""

from __future__ import annotations

import logging

from server.api.edge import stopping


def test_each_callback_runs_once_per_stop_and_a_failing_one_does_not_stop_the_others(monkeypatch, caplog):
    monkeypatch.setattr(stopping, "_callbacks", [])
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    stopping.when_stopping(broken)
    stopping.when_stopping(lambda: calls.append("streams"))
    first = stopping._callbacks[-1]
    stopping.when_stopping(first)  # registered again (a module imported twice): still once
    with caplog.at_level(logging.ERROR, logger="switchboard.edge"):
        stopping.stopping()
    assert calls == ["streams"]
    assert "a stopping callback failed" in caplog.text
