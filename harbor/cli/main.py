"""The ``ah`` command group and the daemon commands: ``agent access-point``, ``webui``, ``db``."""

from __future__ import annotations

import errno
import logging
import sys
import webbrowser
from pathlib import Path
from typing import Any

import asyncclick as click
import trio

from harbor import __version__
from harbor.cli.options import build_settings, daemon_options, storage_options
from harbor.config import ConfigError, Settings
from harbor.logs import setup_logging

log = logging.getLogger("harbor.cli")


@click.group()
@click.version_option(__version__, prog_name="ah")
def cli() -> None:
    """Agent Harbor: run coding-agent sessions as supervised actors, over HTTP."""


@cli.group()
def agent() -> None:
    """Run the daemon."""


async def _serve(settings: Settings, *, webui: bool, open_browser: bool = False, demo: bool = False) -> None:
    from harbor.daemon import Daemon, InsecureBind
    from harbor.store.database import DatabaseError

    setup_logging(settings.log_format, settings.log_level)
    daemon = Daemon(settings, webui=webui)
    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(daemon.run)
            url = binds[0]
            # One line on stdout that scripts and tests can read: where the daemon listens.
            print(f"listening on {url}", flush=True)
            if demo and daemon.harbor is not None:
                await daemon.harbor.start_demo()
            if open_browser:
                await trio.to_thread.run_sync(webbrowser.open, url + "/")
    except BaseException as raised:
        exc = _single_leaf(raised)
        if isinstance(exc, (InsecureBind, DatabaseError, ConfigError)):
            raise click.ClickException(str(exc)) from None
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"cannot listen on {settings.bind}:{settings.port}: "
                                       "the address is already in use (try --port)") from None
        if isinstance(exc, OSError) and exc.errno == errno.EACCES:
            raise click.ClickException(f"cannot listen on {settings.bind}:{settings.port}: permission denied "
                                       "(ports below 1024 need privileges)") from None
        raise


def _single_leaf(exc: BaseException) -> BaseException:
    """The one error inside nested single-member exception groups (nurseries wrap start-up errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@agent.command("access-point")
@daemon_options
async def access_point(config: Path | None, **flags: Any) -> None:
    """Run the daemon in the foreground (what the systemd unit starts)."""
    await _serve(build_settings(config, **flags), webui=False)


@cli.command()
@daemon_options
@click.option("--open", "open_browser", is_flag=True, help="Open the WebUI in a browser.")
@click.option("--demo", is_flag=True, help="Start a demo scenario session once listening.")
@click.option("--remote-server", help="Serve the WebUI for this remote daemon instead of running one.")
async def webui(config: Path | None, open_browser: bool, demo: bool, remote_server: str | None,
                **flags: Any) -> None:
    """Run the daemon in-process and serve the WebUI at /."""
    settings = build_settings(config, remote_server=remote_server, **flags)
    if remote_server:
        from harbor.webui.proxy import serve_proxy

        setup_logging(settings.log_format, settings.log_level)
        await serve_proxy(settings, open_browser=open_browser)
        return
    await _serve(settings, webui=True, open_browser=open_browser, demo=demo)


@cli.group()
def db() -> None:
    """Inspect and migrate the database schema."""


def _open(config: Path | None, flags: dict[str, Any]) -> Any:
    from harbor.store.database import DatabaseError, open_database

    settings = build_settings(config, **flags)
    try:
        return open_database(settings.database_url), settings
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None


@db.command("migrate")
@storage_options
async def db_migrate(config: Path | None, **flags: Any) -> None:
    """Apply pending migrations (the daemon also does this at start-up)."""
    from harbor.store.database import DatabaseError, migrate

    database, _ = _open(config, flags)
    try:
        applied = await trio.to_thread.run_sync(migrate, database)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")


@db.command("status")
@storage_options
async def db_status(config: Path | None, **flags: Any) -> None:
    """Show the schema version and pending migrations."""
    from harbor.store.database import schema_status

    database, settings = _open(config, flags)
    status = await trio.to_thread.run_sync(schema_status, database)
    click.echo(f"database: {settings.database_url}")
    click.echo(f"version:  {status.current or '(empty)'}")
    click.echo(f"head:     {status.head}")
    click.echo(f"pending:  {', '.join(status.pending) if status.pending else 'none'}")
    if status.pending:
        sys.exit(1)


def _register_subcommands() -> None:
    from harbor.cli.client_commands import COMMANDS
    from harbor.cli.keys import audit, keys
    from harbor.cli.service import service

    cli.add_command(service)
    cli.add_command(keys)
    cli.add_command(audit)
    for command in COMMANDS:
        cli.add_command(command)


_register_subcommands()
