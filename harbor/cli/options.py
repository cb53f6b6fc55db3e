"""Options shared by the commands that run or reach the daemon, and the settings they build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncclick as click

from harbor.config import ConfigError, Settings, load_settings

F = Callable[..., Any]


def config_option(f: F) -> F:
    return click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
                        help="TOML configuration file (default: the user config dir's config.toml).")(f)


def storage_options(f: F) -> F:
    f = click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
                     help="Where the database, workspaces, snapshots and logs live.")(f)
    f = click.option("--db", "db", help="Database URL (default sqlite:///<data-dir>/harbor.db).")(f)
    return config_option(f)


def daemon_options(f: F) -> F:
    f = click.option("--bind", help="Address to listen on (default 127.0.0.1).")(f)
    f = click.option("--port", type=int, help="Port (default 8080; 0 picks a free one).")(f)
    f = click.option("--max-concurrent-tasks", type=click.IntRange(min=1), help="Sessions running at once.")(f)
    f = click.option("--allow-command-agent", is_flag=True, default=None,
                     help="Enable the 'command' agent (runs any argv a client sends).")(f)
    f = click.option("--auth", type=click.Choice(["off", "required"]),
                     help="'required': every API call needs an API key or token (docs/security.md).")(f)
    f = click.option("--insecure-no-auth", is_flag=True, default=None,
                     help="Allow a non-loopback bind without authentication (dangerous).")(f)
    f = click.option("--log-format", type=click.Choice(["auto", "human", "json"]), help="Log format on stderr.")(f)
    f = click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))(f)
    return storage_options(f)


def build_settings(config: Path | None, **flags: Any) -> Settings:
    """Settings from every layer; a bad configuration becomes a clean usage error."""
    try:
        return load_settings(config=config, flags=flags)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
