"""``ah keys create|list|revoke`` and ``ah audit``: managing API keys and reading the audit log.

They work on the daemon's database directly (``--data-dir`` / ``--db`` / ``--config``, the same
settings as the daemon), so they need no running daemon and no credential: whoever can write the
data dir already controls the daemon. ``ah audit --remote-server URL`` reads a remote daemon's log
over the API instead (an admin key in ``--api-key`` / ``AH_API_KEY``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import asyncclick as click
import trio

from harbor.cli.options import build_settings, storage_options
from harbor.security import ROLES


def _open_store(config: Path | None, flags: dict[str, Any]) -> Any:
    """Open and migrate the database the settings name (what the daemon would use). Blocking."""
    from harbor.store.database import DatabaseError, migrate, open_database

    settings = build_settings(config, **flags)
    try:
        db = open_database(settings.database_url)
        migrate(db)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    return db


async def _in_store(config: Path | None, flags: dict[str, Any], fn: Any) -> Any:
    def run() -> Any:
        db = _open_store(config, flags)
        try:
            with db.atomic():
                return fn()
        finally:
            db.close()

    return await trio.to_thread.run_sync(run)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (on the daemon's database; no daemon needed)."""


@keys.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="viewer: read; operator: also create and control sessions; admin: also keys and audit.")
@click.option("--tenant", help="Confine the key to this tenant's sessions.")
@click.option("--name", help="A label to recognise the key by.")
@storage_options
async def create(config: Path | None, role: str, tenant: str | None, name: str | None, **flags: Any) -> None:
    """Create a key and print it (only the key, on stdout). It cannot be shown again."""
    from harbor.security.keys import create_key

    created = await _in_store(config, flags, partial(create_key, role, tenant_id=tenant, name=name))
    scope = f", tenant {tenant}" if tenant else ""
    click.echo(f"created key {created.row.id} ({created.row.prefix}…, {role}{scope}); "
               "it is shown only now: store it safely", err=True)
    click.echo(created.key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@storage_options
async def list_(config: Path | None, as_json: bool, **flags: Any) -> None:
    """List keys (id, prefix, role, tenant, last use), newest first; never the keys themselves."""
    from harbor.security.keys import key_view, list_keys

    rows = await _in_store(config, flags, list_keys)
    views = [key_view(r) for r in rows]
    if as_json:
        click.echo(json.dumps({"items": views}))
        return
    if not views:
        click.echo("no keys (create one with: ah keys create --role admin)", err=True)
        return
    click.echo(f"{'ID':26}  {'PREFIX':11}  {'ROLE':8}  {'TENANT':12}  {'LAST USED':24}  {'STATE':7}  NAME")
    for v in views:
        click.echo(f"{v['id']:26}  {v['prefix']:11}  {v['role']:8}  {v['tenantId'] or '-':12}  "
                   f"{v['lastUsedAt'] or 'never':24}  {'revoked' if v['revoked'] else 'active':7}  {v['name'] or ''}")


@keys.command("revoke")
@click.argument("key")
@storage_options
async def revoke(config: Path | None, key: str, **flags: Any) -> None:
    """Revoke KEY (its id or its prefix): requests and WebUI sign-ins using it fail at once."""
    from harbor.security.keys import KeyNotFound, revoke_key

    try:
        row = await _in_store(config, flags, partial(revoke_key, key))
    except KeyNotFound:
        raise click.ClickException(f"no single key has the id or prefix {key!r} (see: ah keys list)") from None
    click.echo(f"revoked key {row.id} ({row.prefix}…)")


@click.command()
@click.option("--action", help="Comma-separated actions; 'session.*' matches a prefix.")
@click.option("--principal", help="Only this principal (e.g. key:<id>, or a token's subject).")
@click.option("--outcome", type=click.Choice(["ok", "denied", "error"]))
@click.option("--since", help="ISO-8601 time (with zone) or unix seconds.")
@click.option("--until", help="ISO-8601 time (with zone) or unix seconds.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="Entries per page.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The page as one JSON document on stdout.")
@click.option("--remote-server", metavar="URL", help="Read this daemon's log over the API instead.")
@click.option("--api-key", envvar="AH_API_KEY", help="Admin API key for --remote-server; env AH_API_KEY.")
@click.option("--token", envvar="AH_TOKEN", help="Admin bearer token for --remote-server; env AH_TOKEN.")
@storage_options
async def audit(config: Path | None, action: str | None, principal: str | None, outcome: str | None,
                since: str | None, until: str | None, limit: int, page: int, as_json: bool,
                remote_server: str | None, api_key: str | None, token: str | None, **flags: Any) -> None:
    """Show the audit log, newest first: who did what, to what, and how it ended."""
    filters = {"action": action, "principal": principal, "outcome": outcome, "since": since, "until": until}
    if remote_server:
        doc = await _remote_audit(remote_server, {**filters, "page": page, "perPage": limit}, api_key, token)
    else:
        doc = await _local_audit(config, flags, filters, page, limit)
    if as_json:
        click.echo(json.dumps(doc))
        return
    for e in doc["items"]:
        click.echo(f"{e['ts']}  {e['outcome']:6}  {e['status'] or '':>3}  {e['action']:16}  "
                   f"{e['principal'] or '-':32}  {e['target'] or '-'}  ({e['client'] or '?'})")
    if doc.get("nextPage"):
        click.echo(f"(more: --page {doc['nextPage']})", err=True)


async def _local_audit(config: Path | None, flags: dict[str, Any], filters: dict[str, Any], page_no: int,
                       limit: int) -> dict[str, Any]:
    from harbor.security.audit import entry_view, parse_time, select_entries
    from harbor.sessions import page

    try:
        since, until = parse_time(filters.pop("since")), parse_time(filters.pop("until"))
    except ValueError as exc:
        raise click.BadParameter(f"--since/--until: {exc}") from None

    def query() -> dict[str, Any]:
        total, rows = select_entries(**filters, since=since, until=until, page=page_no, per_page=limit)
        return page([entry_view(r) for r in rows], page_no, limit, total)

    return await _in_store(config, flags, query)  # type: ignore[no-any-return]


async def _remote_audit(url: str, params: dict[str, Any], api_key: str | None, token: str | None
                        ) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"ApiKey {api_key}"} if api_key else {}
    if token and not api_key:
        headers = {"Authorization": f"Bearer {token}"}
    base = url if "://" in url else f"http://{url}"
    async with httpx.AsyncClient(base_url=base.rstrip("/"), timeout=30) as client:
        try:
            r = await client.get("/api/v1/audit", params={k: v for k, v in params.items() if v is not None},
                                 headers=headers)
        except httpx.TransportError as exc:
            raise click.ClickException(f"cannot reach {base}: {exc}") from None
    if r.status_code != 200:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise click.ClickException(f"{r.status_code}: {detail}")
    return r.json()  # type: ignore[no-any-return]
