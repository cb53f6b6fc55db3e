"""The composition root: one trio run holding the journal, the service core, the HTTP server and
the systemd notifier (ARCHITECTURE.md, "The shape in one picture").

Shutdown (SIGTERM/SIGINT, or :meth:`Daemon.shutdown`) is ordered: tell systemd ``STOPPING=1``,
stop accepting connections and end every open stream, stop the sessions, flush the journal, exit.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import signal
import sys
from dataclasses import dataclass, field

import hypercorn.config
import hypercorn.trio
import trio

from harbor.api.app import create_app
from harbor.api.asgi import ShieldFinalBody
from harbor.config import Settings
from harbor.core import Harbor
from harbor.sdnotify import Notifier
from harbor.store.database import migrate, open_database

log = logging.getLogger(__name__)

#: The GIL switch interval while the daemon runs (seconds; Python's default is 0.005).
SWITCH_INTERVAL = 0.0005

#: How long open connections get to finish once shutdown starts (streams are ended by us first).
GRACEFUL_TIMEOUT = 1.0


class InsecureBind(Exception):
    """A non-loopback bind without authentication configured."""


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit (each session holds several pipes)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def check_bind_safety(settings: Settings, auth_configured: bool) -> None:
    """Refuse to listen beyond loopback without authentication, unless overridden loudly.

    Raises:
        InsecureBind: with a message saying how to fix it.
    """
    if settings.binds_loopback or auth_configured:
        return
    if settings.insecure_no_auth:
        log.warning("LISTENING ON %s WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can reach "
                    "this address can run commands as this user", settings.bind)
        return
    raise InsecureBind(
        f"refusing to listen on {settings.bind} without authentication: configure auth "
        "(auth = \"required\" and an API key) or bind 127.0.0.1; --insecure-no-auth overrides this")


def systemd_listen_fds(environ: dict[str, str] | None = None) -> list[int]:
    """File descriptors passed by systemd socket activation (``LISTEN_FDS`` for this pid)."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(env.get("LISTEN_FDS", "0") or 0)
    return list(range(3, 3 + count))


def hypercorn_config(settings: Settings) -> hypercorn.config.Config:
    config = hypercorn.config.Config()
    fds = systemd_listen_fds()
    host = f"[{settings.bind}]" if ":" in settings.bind else settings.bind
    config.bind = [f"fd://{fd}" for fd in fds] or [f"{host}:{settings.port}"]
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.keep_alive_timeout = 75
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.h11_max_incomplete_size = 64 * 1024  # request line + headers
    config.websocket_max_message_size = 1 << 20
    return config


@dataclass
class Daemon:
    """The daemon's run. ``await nursery.start(daemon.run)`` returns the URLs it listens on."""

    settings: Settings
    webui: bool = False
    notifier: Notifier = field(default_factory=Notifier)
    harbor: Harbor | None = None
    _stop: trio.Event = field(default_factory=trio.Event)

    def shutdown(self) -> None:
        """Begin an orderly shutdown (what SIGTERM does)."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until shutdown is asked. Raises what start-up fails with (bad database, port in use)."""
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        raise_open_files_limit()
        db = open_database(settings.database_url)
        applied = await trio.to_thread.run_sync(migrate, db)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        harbor = self.harbor = Harbor(settings, db)
        check_bind_safety(settings, harbor.auth_configured)
        app = ShieldFinalBody(create_app(harbor, webui=self.webui))
        server_stopped = trio.Event()
        accepting = trio.Event()

        async def serve_http(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await hypercorn.trio.serve(app, hypercorn_config(settings), shutdown_trigger=accepting.wait,
                                           task_status=task_status)
            finally:
                server_stopped.set()

        async with trio.open_nursery() as root:
            await root.start(harbor.run)
            binds = await root.start(serve_http)
            root.start_soon(self.notifier.run_watchdog)
            root.start_soon(self._watch_signals)
            log.info("listening on %s", ", ".join(binds))
            # What start-up built lives as long as the daemon: take it out of the cyclic collector's
            # sight. Otherwise every full collection walks that whole heap (~100k objects) and stalls
            # all event streams ~70 ms, the bulk of delivery latency's p99 (test_event_bench.py).
            gc.collect()
            gc.freeze()
            # The journal's writer thread and the samplers run Python beside the event loop; with the
            # default 5 ms switch interval one of them can hold the GIL for 5 ms while the loop has
            # events to deliver (stack-notes.md: loop lag 5 ms -> 0.8 ms at 0.5 ms).
            sys.setswitchinterval(SWITCH_INTERVAL)
            self.notifier.ready(f"listening on {', '.join(binds)}")
            task_status.started(binds)

            await self._stop.wait()
            log.info("shutting down")
            self.notifier.stopping()
            harbor.end_streams()  # open SSE/WebSocket streams would otherwise hold the server open
            accepting.set()
            with trio.move_on_after(GRACEFUL_TIMEOUT + 1):
                await server_stopped.wait()
            await harbor.stop_sessions()
            root.cancel_scope.cancel()  # the journal flushes in its own shielded finally
        self.notifier.close()
        log.info("stopped")

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.shutdown()
