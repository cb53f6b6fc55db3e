"""The WebUI's HTML pages: the task feed at ``/`` and one page per session.

The pages are server-rendered shells; the browser loads and follows everything else through the
public API (``/api/v1/...``, SSE included) with small scripts in ``static/``. That is what lets the
same templates serve both the in-process WebUI (``ah webui``) and the proxy in front of a remote
daemon (``ah webui --remote-server``, :mod:`harbor.webui.proxy`), where no core is at hand.

When a core is at hand, the pages also carry initial data so the first paint is complete: the
agent catalogue always, and the sessions themselves only while the daemon runs without
authentication (with auth on, data must flow through the API, which checks who is asking; a
signed-out browser is sent to ``/login`` by the scripts on their first 401).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Blueprint, Response, current_app, render_template

from harbor import __version__
from harbor.agents.scenario.loader import shipped_names
from harbor.api.problems import Problem
from harbor.api.schemas import SessionQuery

if TYPE_CHECKING:
    from harbor.core import Harbor

#: Where the pages' scripts and stylesheet are served (the API owns ``/api``).
STATIC_URL_PATH = "/webui/static"
#: Sessions the feed shows on first paint; older ones are in the API's pages.
FEED_SIZE = 50

# Scripts and styles come from the daemon only: no inline script runs, nothing loads from elsewhere.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def webui_blueprint() -> Blueprint:
    """A blueprint serving the WebUI pages and their static assets.

    Works with or without a core in ``app.extensions["harbor"]``: without one (the proxy), the
    pages render empty and their scripts load everything from the API.
    """
    bp = Blueprint("webui", __name__, template_folder="templates", static_folder="static",
                   static_url_path=STATIC_URL_PATH)
    bp.get("/")(feed_page)
    bp.get("/sessions/<session_id>")(session_page)
    bp.after_request(_page_headers)
    return bp


def _core() -> Harbor | None:
    return current_app.extensions.get("harbor")  # type: ignore[no-any-return]


def _data_visible(core: Harbor | None) -> bool:
    """Whether a page may embed session data: only from a local core with auth off."""
    return core is not None and not core.auth_configured


def _agent_choices(core: Harbor | None) -> list[dict[str, Any]] | None:
    if core is None:
        return None
    choices = []
    for spec in core.catalog:
        available, hint = spec.availability()
        choices.append({"type": spec.type, "available": available, "hint": hint or "",
                        "description": spec.description})
    return choices


def _scenario_names(core: Harbor | None) -> list[str]:
    names = set(shipped_names())
    for directory in core.settings.scenario_dirs if core is not None else ():
        names.update(p.stem for p in Path(directory).glob("*") if p.suffix in (".yaml", ".yml", ".json"))
    return sorted(names)


async def feed_page() -> str:
    """``GET /``: the task feed and the new-task form."""
    core = _core()
    sessions = None
    if _data_visible(core):
        assert core is not None
        listing = await core.sessions.list(SessionQuery.model_validate({"perPage": FEED_SIZE}))
        sessions = listing["items"]
    return await render_template("feed.html", sessions=sessions, agents=_agent_choices(core),
                                 scenarios=_scenario_names(core), version=__version__)


async def session_page(session_id: str) -> Any:
    """``GET /sessions/<id>``: one session's activity, files, diffs and timeline."""
    core = _core()
    session = None
    if _data_visible(core):
        assert core is not None
        try:
            session = core.sessions.view(await core.sessions.get_row(session_id))
        except Problem as problem:
            if problem.status != 404:
                raise
            body = await render_template("not_found.html", session_id=session_id, version=__version__)
            return body, 404
    return await render_template("session.html", session_id=session_id, session=session, version=__version__)


async def _page_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
