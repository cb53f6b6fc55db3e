"""``ah status`` (the live view of every session) and ``ah completion`` (shell completion scripts)."""

from __future__ import annotations

import asyncclick as click
from asyncclick.shell_completion import get_completion_class

from harbor.cli.remote import Remote, interrupted, remote_command
from harbor.status import collect, render, watch


@click.command("status")
@click.option("--once", is_flag=True, help="Print one frame and exit (the default when stdout is not a terminal).")
@click.option("--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True,
              help="Seconds between refreshes of the CPU, memory and event columns.")
@remote_command
async def status(remote: Remote, once: bool, interval: float) -> None:
    """Every session on the daemon, live: status, agent, repository, age, CPU, memory, events.

    \b
    Examples:
      ah status
      ah status --once --remote-server http://build-box:8080
      ah status --json        # the sessions, with stats, as one JSON document
    """
    async with remote.client() as client:
        if once or remote.as_json or not remote.out.is_terminal:
            state = await collect(client)
            if remote.as_json:
                remote.print_json({"daemon": {"url": state.url, "version": state.version,
                                              "uptimeSeconds": state.uptime},
                                   "sessions": list(state.sessions.values())})
            else:
                remote.out.print(render(state))
            return
        try:
            await watch(client, remote.out, interval=interval)
        except BaseException as raised:
            if not interrupted(raised):  # Ctrl-C is how a person leaves the view: not an error
                raise


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    Examples:
      eval "$(ah completion bash)"                    # in ~/.bashrc
      ah completion fish > ~/.config/fish/completions/ah.fish
    """
    from harbor.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # every choice has a class
    click.echo(cls(cli, {}, "ah", "_AH_COMPLETE").source())
