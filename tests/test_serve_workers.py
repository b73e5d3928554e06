"""``switchboard serve --workers 2``: two processes share the port, both serve bundles, a settings
change reaches both within a second, and background work runs once (one `switchboard worker`).

Which process answered is read from the kernel, not from a debug header: each test connection
stays open, and /proc tells which server process holds the other end of it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from pgserver import free_port, wait_for_port  # type: ignore[import-not-found]

from server.store import open_store, workspace

ROOT = Path(__file__).resolve().parent.parent


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = (task / "children").read_text().split()
            found += [int(c) for c in children]
            todo += [int(c) for c in children]
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def server_side_inode(server_port: int, client_port: int) -> str | None:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return inode
    return None


class Conn:
    """One keep-alive HTTP/1.1 connection (raw socket: we need its port, and it must stay open)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n".encode())
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, self.file.read(length)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_two_workers_serve_and_both_pick_up_a_settings_change(tmp_path):
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Shop")
    dest = workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                     settings={"measurement_id": "G-BEFORE1"})
    port = free_port()
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": url, "SWITCHBOARD_PORT": str(port),
           "SWITCHBOARD_HOST": "127.0.0.1", "SWITCHBOARD_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--workers", "2"], env=env, cwd=ROOT)
    conns: list[Conn] = []
    try:
        wait_for_port(port, 60)
        path = f"/analytics.js/v1/{source['write_key']}/analytics.min.js"
        by_pid: dict[int, list[Conn]] = {}
        deadline = time.monotonic() + 30
        while len(by_pid) < 2 and time.monotonic() < deadline:
            conn = Conn(port)
            status, body = conn.get(path)  # the server process has accepted it: its socket is open
            assert status == 200 and b"G-BEFORE1" in body
            inode = server_side_inode(port, conn.sock.getsockname()[1])
            pid = next(p for p in descendants(server.pid) if inode in socket_inodes(p))
            by_pid.setdefault(pid, []).append(conn)
            conns.append(conn)
        assert len(by_pid) == 2, "only one process answered"

        # Background work runs once: one `switchboard worker` child, whatever the number of processes.
        cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in descendants(server.pid)]
        workers = [p for p, c in zip(descendants(server.pid), cmdlines) if c[-2:] == [b"worker", b""]]
        assert len(workers) == 1

        # A change made by another process (this one) on the same SQLite file reaches both.
        workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-AFTER22"})
        changed = time.monotonic()
        seen: dict[int, float] = {}
        while len(seen) < 2 and time.monotonic() - changed < 5:
            for pid, group in by_pid.items():
                if pid not in seen and b"G-AFTER22" in group[0].get(path)[1]:
                    seen[pid] = time.monotonic() - changed
            time.sleep(0.02)
        assert sorted(seen) == sorted(by_pid), f"not every process serves the new version: {seen}"
        assert max(seen.values()) < 1.0, seen
        for group in by_pid.values():  # and every connection of both processes, now
            for conn in group:
                assert b"G-AFTER22" in conn.get(path)[1]
    finally:
        for conn in conns:
            conn.close()
        server.terminate()
        server.wait(30)
        engine.dispose()
    assert server.returncode == 0
    assert not Path(f"/proc/{workers[0]}").exists() or b"Z" in Path(f"/proc/{workers[0]}/stat").read_bytes().split()[2]
