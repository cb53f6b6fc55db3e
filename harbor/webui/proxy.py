"""``ah webui --remote-server URL``: the WebUI served here, in front of a daemon running elsewhere.

A small Quart-Trio app, served by hypercorn like the daemon, with two jobs:

- the WebUI pages and assets (:func:`harbor.webui.webui_blueprint`, with no core: the pages render
  empty and their scripts load everything from the API);
- a reverse proxy for the API (``/api/...``) and the sign-in page (``/login``) to the
  remote daemon: every method, the headers that matter (``Authorization``, ``Cookie``,
  ``Last-Event-ID``, ``Idempotency-Key``...) and the body go out as they came in; the answer comes
  back as it is produced, chunk by chunk and never buffered, so Server-Sent Events stay live.

The browser only ever talks to this origin, so the remote daemon needs no CORS configuration and
its sign-in cookie is kept by the browser for this origin. WebSockets are not proxied (the WebUI
does not use them).
"""

from __future__ import annotations

import errno
import json
import logging
import re
import signal
import webbrowser
from collections.abc import AsyncIterator
from functools import partial
from urllib.parse import urlsplit

import httpx
import hypercorn.trio
import trio
from quart import Response, request
from quart_trio import QuartTrio

from harbor.api.asgi import ShieldFinalBody
from harbor.config import Settings
from harbor.daemon import GRACEFUL_TIMEOUT, hypercorn_config
from harbor.webui.pages import webui_blueprint

log = logging.getLogger(__name__)

#: Paths handed to the remote daemon; everything else is the WebUI's own.
PROXIED_RULES = ("/api/<path:rest>", "/login")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: Headers that describe one connection, not the message (RFC 9110 §7.6.1), and the ones httpx
#: and hypercorn set themselves.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
#: Connecting to the remote fails fast; reading never times out (an SSE stream is idle for up to
#: 15 s between keep-alives, and a client that gives up closes the connection itself).
REMOTE_TIMEOUT = httpx.Timeout(10.0, read=None)
#: The browser opens at most ~6 connections per origin; the rest is headroom for several tabs.
REMOTE_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

_COOKIE_DOMAIN = re.compile(r";\s*domain=[^;]*", re.IGNORECASE)


class InvalidRemote(ValueError):
    """The remote server is not an ``http(s)://host[:port]`` URL."""


def remote_base(url: str) -> str:
    """The remote daemon's base URL, without a trailing slash or an ``/api/v1`` suffix.

    Raises:
        InvalidRemote: not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRemote(f"--remote-server must be an http:// or https:// URL, not {url!r}")
    path = parts.path.rstrip("/").removesuffix("/api/v1").rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _outgoing_headers(remote: str) -> list[tuple[str, str]]:
    """The request's headers as the remote should see them."""
    own_origin = _origin(request.host_url)
    headers = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered.startswith("x-forwarded-"):
            continue
        if lowered == "origin" and value == own_origin:
            # The page is ours and so the remote's: say so, or its same-origin checks refuse it.
            value = _origin(remote)
        headers.append((name, value))
    client = request.scope.get("client")
    if client:
        headers.append(("X-Forwarded-For", str(client[0])))
    headers.append(("X-Forwarded-Host", request.host))
    headers.append(("X-Forwarded-Proto", request.scheme))
    return headers


def _returned_headers(upstream: httpx.Response, remote: str) -> list[tuple[str, str]]:
    """The remote's answer headers as the browser should see them."""
    headers = []
    for name, value in upstream.headers.multi_items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP:
            continue
        if lowered == "location" and value.startswith(remote):
            value = value[len(remote):] or "/"
        elif lowered == "set-cookie":
            value = _COOKIE_DOMAIN.sub("", value)  # the browser keeps it for this origin instead
        headers.append((name, value))
    return headers


async def _next_chunk(chunks: AsyncIterator[bytes], closing: trio.Event) -> bytes | None:
    """The next chunk of an answer, or ``None`` at its end or once the proxy is stopping."""
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def fetch() -> None:
            try:
                got.append(await chunks.__anext__())
            except StopAsyncIteration:
                pass
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            await closing.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(fetch)
        nursery.start_soon(watch)
    return got[0] if got else None


async def _relay(upstream: httpx.Response, closing: trio.Event) -> AsyncIterator[bytes]:
    """Yield the remote's body as it arrives; close the remote response however this ends."""
    try:
        chunks = upstream.aiter_raw()
        while (chunk := await _next_chunk(chunks, closing)) is not None:
            yield chunk
    finally:
        # Shielded: this also runs when the browser went away and the request task is cancelled.
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await upstream.aclose()


def _bad_gateway(remote: str, error: Exception) -> Response:
    detail = f"The remote daemon at {remote} cannot be reached: {error or type(error).__name__}"
    body = {"type": "https://agent-harbor.dev/problems/bad-gateway", "title": "Bad Gateway", "status": 502,
            "detail": detail}
    return Response(json.dumps(body), status=502, content_type="application/problem+json")


def create_proxy_app(remote: str, client: httpx.AsyncClient, *, closing: trio.Event | None = None,
                     max_body_bytes: int = 1 << 20) -> QuartTrio:
    """The proxy's application.

    Args:
        remote: the remote daemon's base URL (see :func:`remote_base`).
        client: the HTTP client used to reach it; owned by the caller.
        closing: when set, open streamed answers end (so shutdown does not wait on them).
        max_body_bytes: the largest request body accepted.
    """
    app = QuartTrio("harbor.webui.proxy")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    closing = closing if closing is not None else trio.Event()

    async def forward(rest: str = "") -> Response:
        target = remote + request.scope.get("raw_path", request.path.encode()).decode("latin-1")
        query = request.scope.get("query_string", b"")
        if query:
            target += "?" + query.decode("latin-1")
        body = await request.get_data()
        outgoing = client.build_request(request.method, target, headers=_outgoing_headers(remote),
                                      content=body or None)
        try:
            upstream = await client.send(outgoing, stream=True)
        except httpx.HTTPError as error:
            log.warning("proxy: %s %s failed: %s", request.method, target, error)
            return _bad_gateway(remote, error)
        response = Response(_relay(upstream, closing), status=upstream.status_code)
        response.headers.clear()
        for name, value in _returned_headers(upstream, remote):
            response.headers.add(name, value)
        response.timeout = None  # streams (SSE) last as long as the remote keeps them open
        return response

    for rule in PROXIED_RULES:
        app.add_url_rule(rule, f"proxy:{rule}", forward, methods=METHODS, provide_automatic_options=False)
    app.register_blueprint(webui_blueprint())
    return app


async def _check_remote(client: httpx.AsyncClient, remote: str) -> None:
    """Say in the log whether the remote daemon answers; the proxy serves either way."""
    try:
        with trio.fail_after(5):
            answer = await client.get(f"{remote}/api/v1/version")
        log.info("remote daemon %s answers (%s)", remote, answer.status_code)
    except (httpx.HTTPError, trio.TooSlowError) as error:
        log.warning("remote daemon %s does not answer yet: %s", remote, error or "timeout")


async def serve_proxy(settings: Settings, *, open_browser: bool) -> None:
    """Serve the WebUI for ``settings.remote_server`` until SIGTERM/SIGINT.

    Prints ``listening on URL`` on stdout once listening (scripts and tests read that line), like
    the daemon does.

    Raises:
        click.UsageError: the remote URL is not usable.
        click.ClickException: the local address cannot be bound.
    """
    import asyncclick as click

    try:
        remote = remote_base(settings.remote_server or "")
    except InvalidRemote as exc:
        raise click.UsageError(str(exc)) from None
    if not settings.binds_loopback:
        log.warning("the WebUI proxy listens on %s: anyone who can reach it can use %s with the rights of "
                    "whoever signs in through it", settings.bind, remote)
    closing = trio.Event()
    async with httpx.AsyncClient(timeout=REMOTE_TIMEOUT, limits=REMOTE_LIMITS, follow_redirects=False) as client:
        app = ShieldFinalBody(create_proxy_app(remote, client, closing=closing,
                                               max_body_bytes=settings.max_body_bytes))
        config = hypercorn_config(settings)
        config.graceful_timeout = GRACEFUL_TIMEOUT
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(partial(hypercorn.trio.serve, app, config,
                                                    shutdown_trigger=closing.wait))
                url = binds[0]
                print(f"listening on {url}", flush=True)
                log.info("WebUI for %s listening on %s", remote, url)
                nursery.start_soon(_check_remote, client, remote)
                nursery.start_soon(_stop_on_signal, closing)
                if open_browser:
                    await trio.to_thread.run_sync(webbrowser.open, url + "/")
                await closing.wait()
                nursery.cancel_scope.deadline = trio.current_time() + GRACEFUL_TIMEOUT + 1
        except BaseException as raised:
            exc = _single_error(raised)
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                raise click.ClickException(f"cannot listen on {settings.bind}:{settings.port}: "
                                           "the address is already in use (try --port)") from None
            raise
    log.info("stopped")


def _single_error(exc: BaseException) -> BaseException:
    """The one error inside nested single-member exception groups (nurseries wrap start-up errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _stop_on_signal(closing: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s", signal.Signals(signum).name)
            closing.set()
            return
