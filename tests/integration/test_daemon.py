"""The daemon as people run it: start-up, the core endpoints, Problem+JSON, OpenAPI, graceful
shutdown with streams and idle keep-alive connections open, and systemd notifications."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from tests.harness import DaemonProcess


def test_core_endpoints_answer(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        health = c.get("/api/v1/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        ready = c.get("/api/v1/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
        version = c.get("/api/v1/version").json()
        assert version["version"]
        assert version["api"] == "v1"
        assert health.headers["X-Request-ID"]
        echoed = c.get("/api/v1/healthz", headers={"X-Request-ID": "trace-123"})
        assert echoed.headers["X-Request-ID"] == "trace-123"
        docs = c.get("/api/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        assert c.get("/api/docs/static/swagger-ui-bundle.js").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    [
        ("POST", "/api/v1/tasks", {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
         400, None),
        ("GET", "/api/v1/no/such/route", {}, 404, None),
        ("DELETE", "/api/v1/healthz", {}, 405, None),
        ("POST", "/api/v1/tasks", {"content": b"{\"prompt\": \"" + b"x" * (2 << 20) + b"\"}",
                                   "headers": {"Content-Type": "application/json"}}, 413, None),
        ("POST", "/api/v1/tasks", {"json": {"prompt": "hi", "agents": [{"type": "scenario", "count": 0}]}},
         400, "agents[0].count"),
        ("POST", "/api/v1/tasks", {"json": {"agents": [{"type": "scenario"}]}}, 400, "prompt"),
        ("POST", "/api/v1/tasks", {"json": {"prompt": "x", "repo": {"mode": "git"}, "agent": {"type": "mock"}}},
         400, "repo.url"),
        ("GET", "/api/v1/sessions?perPage=500", {}, 400, "perPage"),
    ],
)
def test_errors_are_problem_json(daemon: DaemonProcess, method: str, path: str, kwargs: dict, status: int,
                                 field: str | None) -> None:
    with daemon.client() as c:
        r = c.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    doc = r.json()
    assert doc["status"] == status
    assert doc["title"]
    assert doc["type"].startswith("https://")
    if field is not None:
        assert isinstance(doc["errors"], dict), doc
        assert field in doc["errors"], doc
    if status == 405:
        assert "GET" in r.headers["Allow"]


def test_openapi_document_is_valid_and_lists_every_route(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        doc = c.get("/api/v1/openapi.json").json()
    validate(doc)
    paths = doc["paths"]
    for expected in ("/api/v1/healthz", "/api/v1/readyz", "/api/v1/version", "/api/v1/tasks",
                     "/api/v1/sessions", "/api/v1/sessions/{session_id}", "/api/v1/sessions/{session_id}/events"):
        assert expected in paths, expected
    assert "post" in paths["/api/v1/tasks"]
    assert "delete" in paths["/api/v1/sessions/{session_id}"]


def test_openapi_matches_the_served_routes() -> None:
    """Every HTTP route the app serves is in the document, and nothing else."""
    from harbor.api.app import create_app
    from harbor.api.routing import ENDPOINTS

    served = {(r.rule, m) for r in _app_rules(create_app) for m in r.methods - {"HEAD", "OPTIONS"}
              if r.rule.startswith("/api/v1/") and not r.websocket and not r.rule.endswith("openapi.json")}
    declared = {(e.rule, e.method) for e in ENDPOINTS}
    assert served == declared


def _app_rules(create_app):  # type: ignore[no-untyped-def]
    from harbor.config import Settings

    class Core:
        settings = Settings()
        extensions: dict = {}

    app = create_app(Core(), webui=False)  # type: ignore[arg-type]
    return list(app.url_map.iter_rules())


def test_sigterm_exits_promptly_with_an_sse_stream_and_an_idle_keepalive_open(tmp_path: Path) -> None:
    # Regression: quart-trio + hypercorn kept idle keep-alive connections open and waited out the
    # graceful timeout; open SSE streams held shutdown the same way.
    d = DaemonProcess(tmp_path / "data", "--allow-command-agent").start()
    idle = httpx.Client(base_url=d.url)
    assert idle.get("/api/v1/healthz").status_code == 200  # now an idle pooled keep-alive connection
    stream_client = httpx.Client(base_url=d.url, timeout=httpx.Timeout(10, read=30))
    created = stream_client.post("/api/v1/tasks", json={
        "prompt": "sleep", "agents": [{"type": "command", "settings": {"command": ["sleep", "60"]}}]}).json()
    got_first_frame = threading.Event()
    ended = threading.Event()

    def hold_stream() -> None:
        with stream_client.stream("GET", f"/api/v1/sessions/{created['id']}/events",
                                  headers={"Accept": "text/event-stream"}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    got_first_frame.set()
        ended.set()

    reader = threading.Thread(target=hold_stream, daemon=True)
    reader.start()
    assert got_first_frame.wait(10)
    code, seconds = d.stop()
    assert code == 0, d.log()
    assert seconds < 2.0, f"shutdown took {seconds:.2f}s"
    assert ended.wait(5), "the SSE stream was not ended by the shutdown"
    idle.close()
    stream_client.close()


def test_systemd_notifications(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(10)
    d = DaemonProcess(tmp_path / "data", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"})
    d.start()
    seen: list[str] = []

    def receive_until(marker: str) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = sock.recv(4096).decode()
            seen.append(message)
            if marker in message.split("\n"):
                return
        raise AssertionError(f"{marker} not received; got {seen}")

    receive_until("READY=1")
    assert any(line.startswith("STATUS=listening on") for m in seen for line in m.split("\n"))
    receive_until("WATCHDOG=1")
    code, _ = d.stop()
    receive_until("STOPPING=1")
    assert code == 0
    sock.close()


def test_port_in_use_is_a_clear_error(daemon: DaemonProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    port = daemon.url.rsplit(":", 1)[1]
    r = subprocess.run([sys.executable, "-m", "harbor.cli", "agent", "access-point", "--port", port,
                        "--data-dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_non_loopback_bind_without_auth_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "harbor.cli", "agent", "access-point", "--bind", "0.0.0.0",
                        "--port", "0", "--data-dir", str(tmp_path / "x")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0 without authentication" in r.stderr
    assert "Traceback" not in r.stderr
