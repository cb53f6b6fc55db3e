"""What every client command shares: where the daemon is, credentials, ``--json``, error lines, follow.

A command decorated with :func:`remote_command` receives a :class:`Remote` as its first argument and
gets the options ``--remote-server``, ``--api-key`` (``AH_API_KEY``), ``--token`` (``AH_TOKEN``),
``--config`` and ``--json``. A :class:`~harbor.client.HarborError` escaping the command becomes one
line on stderr (the problem's ``detail``) and exit status 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncclick as click
import trio
from rich.console import Console

from harbor.cli.options import build_settings
from harbor.client import TERMINAL, HarborClient, HarborError
from harbor.terminal import event_line, outcome_exit_code

#: How long a command keeps retrying a daemon that does not answer before saying so. Short: a person
#: is waiting, and "is it running?" is the likely answer.
COMMAND_RETRY_SECONDS = 2.0

#: Output width when stdout is a pipe or a file (``COLUMNS`` overrides it).
PIPE_WIDTH = 200


@dataclass
class Remote:
    """The daemon a command talks to, and how the command prints.

    Attributes:
        url: the daemon's base URL.
        as_json: print machine-readable JSON only (on stdout).
        out: the console for results (stdout).
        err: the console for errors and notes (stderr).
    """

    url: str
    api_key: str | None = None
    token: str | None = None
    as_json: bool = False
    out: Console = field(default_factory=lambda: _stdout_console())
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))

    def client(self, **kwargs: Any) -> HarborClient:
        """A client for this daemon (close it: ``async with remote.client() as c``)."""
        kwargs.setdefault("retry_for", COMMAND_RETRY_SECONDS)
        return HarborClient(self.url, api_key=self.api_key, token=self.token, **kwargs)

    def print_json(self, data: Any) -> None:
        """One JSON document on stdout, nothing else."""
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        """A remark for a person (stderr, so stdout stays clean)."""
        self.err.print(message, style="dim")


def _stdout_console() -> Console:
    # Rich assumes 80 columns when stdout is not a terminal; tables of ULIDs need more.
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=PIPE_WIDTH if piped else None)


def remote_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")(f)
    f = click.option("--token", envvar="AH_TOKEN", help="Bearer token (JWT); env AH_TOKEN.")(f)
    f = click.option("--api-key", envvar="AH_API_KEY", help="API key; env AH_API_KEY.")(f)
    f = click.option("--config", type=click.Path(path_type=Path, dir_okay=False),
                     help="TOML configuration file (for remote_server, bind and port).")(f)
    return click.option("--remote-server", metavar="URL",
                        help="The daemon's URL (default: remote_server from the settings, else the local "
                             "daemon's bind and port).")(f)


def resolve_url(remote_server: str | None, config: Path | None) -> str:
    """``--remote-server``, else ``remote_server`` from the settings, else the local daemon's URL."""
    if remote_server:
        url = remote_server
    else:
        settings = build_settings(config)
        url = settings.remote_server or settings.local_url
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def remote_command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Give an async command the client options and a :class:`Remote`; turn API errors into one line."""

    @functools.wraps(f)
    async def command(*args: Any, remote_server: str | None, config: Path | None, api_key: str | None,
                      token: str | None, as_json: bool, **kwargs: Any) -> Any:
        remote = Remote(resolve_url(remote_server, config), api_key=api_key, token=token, as_json=as_json)
        try:
            return await f(remote, *args, **kwargs)
        except BaseException as raised:
            if interrupted(raised):
                raise click.exceptions.Exit(130) from None
            problem = next((e for e in leaf_errors(raised) if isinstance(e, HarborError)), None)
            if problem is not None:
                raise click.ClickException(str(problem)) from None
            raise

    return remote_options(command)


def leaf_errors(exc: BaseException) -> Iterator[BaseException]:
    """The errors inside (possibly nested) exception groups; the error itself if it is not a group."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaf_errors(inner)
    else:
        yield exc


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, possibly wrapped in exception groups by nurseries."""
    return all(isinstance(leaf, KeyboardInterrupt) for leaf in leaf_errors(exc))


async def follow_sessions(remote: Remote, client: HarborClient, session_ids: Iterable[str], *,
                          after: int = 0) -> int:
    """Print the sessions' events as they happen until all have ended; the exit code of the outcome.

    One session: plain lines. Several: each line starts with the session's short id. With
    ``--json`` every event is one JSON line on stdout. The exit code is the worst outcome: 0 all
    completed, 1 one failed, 2 one was stopped or cancelled (and none failed).
    """
    ids = list(session_ids)
    finals: dict[str, str | None] = {}

    async def follow_one(session_id: str) -> None:
        prefix = session_id[-6:] if len(ids) > 1 else ""
        final = None
        async with aclosing(client.follow(session_id, after=after)) as events:
            async for event in events:
                if event.get("type") == "status":
                    final = event.get("status")
                if remote.as_json:
                    remote.print_json(event)
                elif (line := event_line(event, prefix=prefix)) is not None:
                    remote.out.print(line, soft_wrap=True)
        if final not in TERMINAL:  # a finished session's stream may open past its last status event
            final = (await client.get_session(session_id)).get("status")
        finals[session_id] = final

    async with trio.open_nursery() as nursery:
        for session_id in ids:
            nursery.start_soon(follow_one, session_id)
    codes = [outcome_exit_code(status) for status in finals.values()]
    if not remote.as_json:
        for session_id, status in finals.items():
            tail = f"{session_id} " if len(ids) > 1 else "session "
            remote.err.print(f"{tail}ended: {status}", style="bold" if status == "completed" else "bold red")
    return 1 if 1 in codes else max(codes, default=0)


def parse_settings(values: Iterable[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that reads as JSON (``50``, ``true``, ``[1,2]``) is decoded.

    Raises:
        click.BadParameter: an item without ``=`` or with an empty key.
    """
    settings: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--setting")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        settings[key.strip()] = value
    return settings


def now() -> float:
    """Wall-clock seconds (ages are differences with the daemon's timestamps)."""
    return time.time()
