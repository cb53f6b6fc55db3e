"""The API's blueprints, one per resource; :func:`api_blueprints` lists what the app registers."""

from __future__ import annotations

from quart import Blueprint


def api_blueprints() -> list[Blueprint]:
    from harbor.api import catalog, drafts, events, health, repositories, security, sessions, tasks, timeline, workspace

    return [health.bp, tasks.bp, sessions.bp, events.bp, security.bp, security.login_bp,
            workspace.bp, timeline.bp, catalog.bp, drafts.bp, repositories.bp]
