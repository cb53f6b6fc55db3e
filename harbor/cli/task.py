"""``ah task create``: start work on the daemon (and optionally watch it to the end)."""

from __future__ import annotations

from pathlib import Path

import asyncclick as click

from harbor.cli.remote import Remote, follow_sessions, parse_settings, remote_command


@click.group()
def task() -> None:
    """Create work on the daemon."""


def _repo_argument(repo: str | None) -> str | None:
    """A local directory becomes its absolute path (the daemon's cwd is not ours); URLs pass as they are."""
    if repo is None:
        return None
    if "://" not in repo and not repo.startswith("git@") and Path(repo).expanduser().exists():
        return str(Path(repo).expanduser().resolve())
    return repo


@task.command("create")
@click.option("--prompt", "-p", required=True, help="What the agent is asked to do.")
@click.option("--agent", "-a", default="scenario", show_default=True,
              help="Agent type: scenario, claude-code, codex, command...")
@click.option("--agent-version", default="latest", show_default=True, help="Agent version.")
@click.option("--repo", "-r", metavar="PATH|URL", help="Git repository to work on (a local path or a URL).")
@click.option("--branch", "-b", help="Branch of --repo to start from.")
@click.option("--count", "-n", type=click.IntRange(1, 50), default=1, show_default=True,
              help="How many sessions to start.")
@click.option("--setting", "-s", "settings", multiple=True, metavar="KEY=VALUE",
              help="An agent setting (repeatable); JSON values are decoded: speed=50, scenario=demo.")
@click.option("--idempotency-key", help="Send this key: repeating the command then creates nothing new.")
@click.option("--follow", "-f", is_flag=True, help="Print the sessions' events until they end; exit with "
                                                    "the outcome (0 completed, 1 failed, 2 stopped).")
@remote_command
async def create(remote: Remote, prompt: str, agent: str, agent_version: str, repo: str | None,
                 branch: str | None, count: int, settings: tuple[str, ...], idempotency_key: str | None,
                 follow: bool) -> None:
    """Create a task: COUNT sessions of AGENT working on PROMPT.

    \b
    Examples:
      ah task create -p "Add a greeting" --setting speed=5 --follow
      ah task create -p "Fix the login bug" --agent claude-code --repo . --branch main
      ah task create -p "run" --agent command --setting 'command=["make","test"]' --json
    """
    agent_settings = parse_settings(settings)
    async with remote.client() as client:
        created = await client.create_task(prompt, agent=agent, version=agent_version, count=count,
                                           settings=agent_settings, repo=_repo_argument(repo), branch=branch,
                                           idempotency_key=idempotency_key)
        ids = created.get("session_ids") or [created["id"]]
        if remote.as_json:
            remote.print_json(created)
        else:
            for session_id in ids:
                remote.out.print(f"created session [bold]{session_id}[/] ({agent}, {created.get('status')})")
            if not follow:
                remote.note(f"follow it with: ah session follow {ids[0]}")
        if follow:
            raise click.exceptions.Exit(await follow_sessions(remote, client, ids))
