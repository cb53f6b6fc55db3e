"""The Quart-Trio application factory: blueprints, Problem+JSON for every error, request ids,
CORS, body limits, the OpenAPI document and its interactive page."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import ulid
from quart import Quart, Response, g, jsonify, request, send_from_directory
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from harbor import __version__
from harbor.api import routing
from harbor.api.problems import PROBLEM_CONTENT_TYPE, Problem

if TYPE_CHECKING:
    from harbor.core import Harbor

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
REQUEST_ID_HEADER = "X-Request-ID"


def problem_response(problem: Problem) -> Response:
    response = jsonify(problem.body(getattr(g, "request_id", None)))
    response.status_code = problem.status
    response.content_type = PROBLEM_CONTENT_TYPE
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _install_error_handlers(app: Quart) -> None:
    @app.errorhandler(Problem)
    async def on_problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    async def on_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers: dict[str, str] = {}
        detail = exc.description
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            headers["Allow"] = ", ".join(sorted(exc.valid_methods))
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        elif status == 404:
            detail = f"No route {request.path}"
        elif status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = f"The request body is larger than the limit of {limit} bytes"
        return problem_response(Problem(status, detail, headers=headers))

    @app.errorhandler(Exception)
    async def on_unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(Problem(500, "An unexpected error happened; the daemon's log has the details "
                                             f"(request id {getattr(g, 'request_id', '?')})."))


def _install_middleware(app: Quart, cors_origins: list[str], *, credentials_for_any: bool = True) -> None:
    @app.before_request
    async def assign_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else str(ulid.ULID())

    @app.before_request
    async def answer_preflight() -> Response | None:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return Response("", status=204)
        return None

    @app.after_request
    async def decorate(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        origin = request.headers.get("Origin")
        if origin and ("*" in cors_origins or origin in cors_origins):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if credentials_for_any or origin in cors_origins:
                response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Headers"] = (
                "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-ID")
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
            response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After, Location"
        return response


def _served_rules(app: Quart) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules() for method in (rule.methods or ())}


def _install_docs(app: Quart) -> None:
    import swagger_ui_bundle

    @app.get(f"{API_PREFIX}/openapi.json")
    async def openapi_json() -> Any:
        if "openapi" not in app.extensions:
            app.extensions["openapi"] = routing.openapi_document(
                title="Agent Harbor", version=__version__, served_rules=_served_rules(app))
        return app.extensions["openapi"]

    @app.get("/api/docs")
    async def docs_page() -> Response:
        return Response(_SWAGGER_PAGE, content_type="text/html; charset=utf-8")

    @app.get("/api/docs/static/<path:name>")
    async def docs_static(name: str) -> Response:
        return await send_from_directory(swagger_ui_bundle.swagger_ui_path, name)


_SWAGGER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Agent Harbor API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>"""


def create_app(harbor: Harbor, *, webui: bool = False) -> QuartTrio:
    """Build the application serving ``harbor`` (the service core).

    Args:
        harbor: the running core the handlers ask.
        webui: also serve the WebUI at ``/``.
    """
    from harbor.api import blueprints

    settings = harbor.settings
    app = QuartTrio("harbor")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = 60
    app.extensions["harbor"] = harbor
    # With auth on, "*" lets any origin call with headers, but only listed origins with credentials.
    _install_middleware(app, settings.cors_origins, credentials_for_any=settings.auth != "required")
    _install_error_handlers(app)
    access = getattr(harbor, "security", None)
    if access is not None:
        from harbor.security.middleware import install as install_security

        install_security(app, access, harbor)
    for bp in blueprints.api_blueprints():
        app.register_blueprint(bp)
    _install_docs(app)
    if webui:
        from harbor.webui import webui_blueprint

        app.register_blueprint(webui_blueprint())
    return app
