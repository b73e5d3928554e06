"""The bell on SQLite (server/store/bell.py) as CLI commands ring it: a command that changes the
store rings one shared file per channel (``cli.<channel>``), a command that only reads leaves no
trace beside the database. (Workers hearing it: tests/test_event_driven_workers.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def switchboard(db: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{db}"}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_cli_commands_ring_one_shared_file_per_channel_and_readers_leave_nothing(tmp_path):
    db = tmp_path / "sb.db"
    bells = tmp_path / "sb.db-bell"
    switchboard(db, "init")
    switchboard(db, "sources", "list")
    assert not bells.exists()  # reading rings nothing
    switchboard(db, "sources", "create", "Shop")
    rung = bells / "cli.switchboard_settings"
    first = rung.stat().st_mtime_ns
    switchboard(db, "sources", "create", "Blog")
    assert rung.stat().st_mtime_ns > first  # the same file, rung again: watchers see a change
    assert sorted(p.name for p in bells.iterdir()) == ["cli.switchboard_settings"]  # nothing per command
