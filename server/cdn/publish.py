"""Static publish: every served file of every enabled source, written to ``SWITCHBOARD_PUBLISH_DIR``
so that nginx or a CDN can serve bundles without Python in the hot path (docs/deployment.md).

Per write key, under the directory (paths mirror the origin's URLs, so one ``try_files`` covers all):

    {bundle_path}/{writeKey}/analytics.min.js           + .gz + .br
    {bundle_path}/{writeKey}/analytics.{hash}.min.js    + .gz + .br   (the last few versions are kept)
    v1/projects/{writeKey}/settings                     + .gz + .br
    snippet/{writeKey}.js                               + .gz + .br

The bytes are the origin's own (the bundle cache's build: the same gzip and brotli bodies the
origin answers with), so a file served by nginx and one served by us decode to the same content.

- **Polished:** a version is published at once with the fast build's encodings (when the cache has
  not polished it yet), then, in the background, re-written with the polished ones (brotli quality
  11 and Zopfli's gzip, ``bundles.polish``; the cache and the store keep them too), since every
  visitor of a published version downloads those bytes for as long as it lasts. Polishing takes
  at most ``interval`` seconds per pass, between checks for changes, so it delays no publish by
  more than that (and uses about half a core: a 10k-key first publish is polished in 20 to 30
  minutes).

- **Atomic:** each file is written to a temporary file in its own directory, fsynced, then
  ``os.replace``d over the old one. A reader opens either the old file or the new one, never a
  torn mix; the hashed file is written before ``analytics.min.js`` names its content.
- **When:** a thread wakes on the change bus (``notify.SETTINGS``: this process's changes, other
  processes' over PostgreSQL) and otherwise checks the store's one-row settings sequence every
  ``interval`` (which also covers other processes on one SQLite file), so a change is on disk
  within about ``interval`` on every server. Startup publishes everything once (full reconcile).
- **Idempotent and race-safe:** several servers may publish into one directory: temporary names
  are unique, replacing is atomic, and a ``.published`` marker per key (its settings version)
  keeps a server that is behind from writing an older version over a newer one.
- **One writer per directory at a time:** the processes of ``serve --workers N`` (or servers
  sharing a network directory) take turns through an ``flock`` on ``.publish.lock``: one of them
  publishes and runs the hook, the others only retry the lock each ``interval`` (and take over
  within it when that process exits).
- **Removal:** keys that are gone, disabled or rotated away lose their files on the next reconcile
  (the directory on disk is compared with the store's).
- **Hooks:** ``SWITCHBOARD_PUBLISH_COMMAND`` runs after each publish that changed something, with the
  changed write keys as arguments and in ``SWITCHBOARD_PUBLISHED_KEYS``; a failure or timeout is
  logged, never fatal (a CDN purge or an ``rclone sync``). ``SWITCHBOARD_PUBLISH_WEBHOOK`` gets
  the same keys and the URL paths written or removed, POSTed from a thread of its own
  (publish_webhook.py) so that a slow CDN API never delays the next publish. Both run when both
  are set.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import brotli

from server.cdn.bundle_cache import PINNED_HISTORY, BundleCache
from server.cdn.bundle_directory import Known
from server.cdn.bundles import gzip_best
from server.cdn.publish_webhook import PublishWebhook
from server.cdn.snippet import render_snippet
from server.store import bundle_builds, notify

log = logging.getLogger("switchboard.publish")
MARKER = ".published"
COMMAND_TIMEOUT_S = 60.0


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (temp file in the same directory, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix="-" + path.name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_encoded(path: Path, body: bytes, gz: bytes | None = None, br: bytes | None = None) -> None:
    """``path`` and its ``.gz`` / ``.br`` siblings (compressed here unless given); siblings first,
    so that whenever the identity file is current its compressed forms are too."""
    write_atomic(path.with_name(path.name + ".gz"), gz if gz is not None else gzip_best(body))
    write_atomic(path.with_name(path.name + ".br"), br if br is not None else brotli.compress(body, quality=11))
    write_atomic(path, body)


def _remove(path: Path) -> None:
    # Compressed siblings first: while the identity file exists, its siblings are current.
    for name in (path.name + ".gz", path.name + ".br", path.name):
        try:
            os.unlink(path.with_name(name))
        except FileNotFoundError:
            pass


class Publisher:
    def __init__(self, cache: BundleCache, root: str | os.PathLike, *, command: str = "",
                 webhook: PublishWebhook | None = None, interval: float = 0.25):
        self.cache, self.config, self.engine = cache, cache.config, cache.engine
        self.root = Path(root)
        self.bundles = self.root / self.config.bundle_path.strip("/")
        self.bundle_url = "/" + self.config.bundle_path.strip("/")  # URL path prefix of the bundles
        self.webhook = webhook
        self._paths: list[str] = []  # URL paths written or removed by the pass under way
        self.settings_dir = self.root / "v1" / "projects"
        self.snippets = self.root / "snippet"
        self.command, self.interval = command, interval
        self.published: dict[str, int] = {}  # write_key -> settings version on disk
        self.unpolished: dict[str, Known] = {}  # published with the fast build's encodings
        self.runs = 0  # reconciles that wrote or removed something
        self._seq: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one reconcile at a time
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._unsubscribe = notify.SETTINGS.subscribe(lambda *_change: self._wake.set())

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        try:
            self.reconcile(full=True)
        except Exception:
            log.exception("the first static publish failed; retrying in the background")
        self._thread = threading.Thread(target=self._run, name="static-publish", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._unsubscribe()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock: another process takes over
            self._lock_fd = None
        if self.webhook is not None:
            self.webhook.close()

    def leader(self) -> bool:
        """Whether this process holds the directory's publish lock (taken once, kept until close)."""
        if self._lock_fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._lock_fd = fd
            self._wake.set()  # a new leader reconciles everything at once
            self.published.clear()
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            woken = self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not self.leader():
                    continue
                seq = bundle_builds.read_sequence(self.engine)
                if woken or seq != self._seq or failures:
                    self.reconcile(full=bool(failures))
                failures = 0
                self.polish(budget=self.interval)
            except Exception:
                failures += 1
                if failures in (1, 10) or failures % 600 == 0:
                    log.warning("static publish failed (%d in a row)", failures, exc_info=failures == 1)

    # -------------------------------------------------------------- one pass

    def reconcile(self, *, full: bool = False) -> list[str]:
        """Write every enabled key whose version is not on disk yet, remove every key that should
        not be there; run the hook. Returns the write keys that changed."""
        with self._lock:
            if not self.leader():
                return []
            self._seq = bundle_builds.read_sequence(self.engine)
            rows = bundle_builds.directory(self.engine)
            wanted = {key: Known(source_id, version, enabled) for key, source_id, version, enabled in rows if enabled}
            if full:
                self.published.clear()
                self.unpolished.clear()
            self._paths = []
            changed = [key for key, known in wanted.items() if self._publish(key, known)]
            changed += [key for key in self._on_disk() - set(wanted) if self._unpublish(key)]
            if changed:
                self.runs += 1
                if self.webhook is not None:  # first: it only queues, the command may take a while
                    self.webhook.notify(changed, self._paths)
                self._hook(changed)
            return changed

    def _on_disk(self) -> set[str]:
        keys = set(self.published)
        if self.bundles.is_dir():
            keys.update(p.name for p in self.bundles.iterdir() if p.is_dir() and p.name != "plugins")
        if self.settings_dir.is_dir():
            keys.update(p.name for p in self.settings_dir.iterdir() if p.is_dir())
        if self.snippets.is_dir():
            keys.update(p.name[:-3] for p in self.snippets.iterdir() if p.name.endswith(".js"))
        return keys

    def _marker(self, write_key: str) -> int:
        try:
            return int((self.bundles / write_key / MARKER).read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return -1

    def _publish(self, write_key: str, known: Known) -> bool:
        if self.published.get(write_key) == known.version:
            return False
        if self._marker(write_key) > known.version:  # another server is ahead of us
            return False
        entry = self.cache.current(write_key, known)
        if entry is None:  # deleted meanwhile: the next pass removes it
            return False
        built, folder = entry.bundle, self.bundles / write_key
        write_encoded(folder / f"analytics.{built.hash}.min.js", built.body, built.gzip, built.br)
        write_encoded(self.settings_dir / write_key / "settings", entry.settings)
        # The same snippet the origin serves: it sends the first events itself when it may.
        early = self.cache.snippet_early(write_key, known.version)
        write_encoded(self.snippets / f"{write_key}.js", render_snippet(self.config, write_key, early).encode())
        write_encoded(folder / "analytics.min.js", built.body, built.gzip, built.br)
        write_atomic(folder / MARKER, f"{known.version} {built.hash}\n".encode())
        self._paths += [f"{self.bundle_url}/{write_key}/analytics.min.js",
                        f"{self.bundle_url}/{write_key}/analytics.{built.hash}.min.js",
                        f"/v1/projects/{write_key}/settings", f"/snippet/{write_key}.js"]
        self._prune_versions(folder)
        self.published[write_key] = known.version
        if built.polished:
            self.unpolished.pop(write_key, None)
        else:
            self.unpolished[write_key] = known
        return True

    def polish(self, budget: float = 0.0) -> int:
        """Re-write the bundles published with fast encodings with polished ones, for about
        ``budget`` seconds (at least one). Returns how many were re-written."""
        done, until = 0, time.monotonic() + budget
        with self._lock:
            while self.unpolished and (not done or time.monotonic() < until):
                write_key, known = next(iter(self.unpolished.items()))
                try:  # it leaves the list once its files are written (or it need not be)
                    done += self._polish(write_key, known)
                finally:
                    del self.unpolished[write_key]
        return done

    def _polish(self, write_key: str, known: Known) -> bool:
        if self.published.get(write_key) != known.version or self._marker(write_key) != known.version:
            return False  # moved on (here or on another server): that version is published anew
        entry = self.cache.current(write_key, known)
        if entry is None:
            return False
        built = self.cache.keeper.polished((write_key, known.version), entry).bundle
        folder = self.bundles / write_key
        # The same content: each file is replaced whole by a smaller one (readers get either).
        for name in (f"analytics.{built.hash}.min.js", "analytics.min.js"):
            write_atomic(folder / f"{name}.gz", built.gzip)
            write_atomic(folder / f"{name}.br", built.br)
        return True

    def _prune_versions(self, folder: Path) -> None:
        """Keep the hashed files of the last ``PINNED_HISTORY`` versions (pages that loaded an
        older bundle may still ask for its immutable URL)."""
        hashed = sorted((p for p in folder.glob("analytics.*.min.js") if p.name.count(".") == 3),
                        key=lambda p: p.stat().st_mtime, reverse=True)
        for old in hashed[PINNED_HISTORY:]:
            _remove(old)
            self._paths.append(f"{self.bundle_url}/{folder.name}/{old.name}")

    def _unpublish(self, write_key: str) -> bool:
        self.published.pop(write_key, None)
        self.unpolished.pop(write_key, None)
        gone = False
        bundles = self.bundles / write_key
        if bundles.is_dir():
            self._paths += sorted(f"{self.bundle_url}/{write_key}/{p.name}" for p in bundles.glob("analytics*.min.js"))
        if (self.settings_dir / write_key / "settings").exists():
            self._paths.append(f"/v1/projects/{write_key}/settings")
        for folder in (bundles, self.settings_dir / write_key):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                gone = True
        snippet = self.snippets / f"{write_key}.js"
        if snippet.exists():
            _remove(snippet)
            self._paths.append(f"/snippet/{write_key}.js")
            gone = True
        return gone

    # -------------------------------------------------------------- the hook

    def _hook(self, keys: list[str]) -> None:
        if not self.command:
            return
        env = {**os.environ, "SWITCHBOARD_PUBLISHED_KEYS": " ".join(keys), "SWITCHBOARD_PUBLISH_DIR": str(self.root)}
        try:
            result = subprocess.run(shlex.split(self.command) + keys, env=env, timeout=COMMAND_TIMEOUT_S,
                                    capture_output=True, text=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("publish command failed: %s", exc)
            return
        if result.returncode != 0:
            log.warning("publish command exited with status %d: %s", result.returncode, result.stderr.strip()[-500:])
