"""Signing in to the WebUI in a real browser: the /login page, the HttpOnly session cookie, and an
EventSource that works on the cookie alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import DaemonProcess, scenario_task, wait_status
from tests.security.conftest import API, create_key

pytestmark = pytest.mark.browser

def test_sign_in_then_follow_a_session_on_the_cookie_alone(tmp_path: Path, page: Any) -> None:
    browser_page = page
    data = tmp_path / "data"
    admin = create_key(data, "admin")
    daemon = DaemonProcess(data, "--auth", "required").start()
    try:
        with daemon.client(headers={"Authorization": f"ApiKey {admin}"}) as client:
            operator = client.post(f"{API}/keys", json={"role": "operator", "name": "browser"}).json()["key"]
        with daemon.client(headers={"Authorization": f"ApiKey {operator}"}) as client:
            session_id = client.post(f"{API}/tasks", json=scenario_task("long_running", speed=1)).json()["id"]
            wait_status(client, session_id, "running")
        page = browser_page

        # A wrong key is refused on the page itself.
        page.goto(f"{daemon.url}/login?next=/api/v1/auth/whoami")
        page.fill("#key", "ah_not-a-key")
        page.click("button[type=submit]")
        page.wait_for_function("document.getElementById('error').textContent.length > 0")
        assert "not valid" in page.inner_text("#error")

        page.fill("#key", operator)
        page.click("button[type=submit]")
        page.wait_for_url(f"{daemon.url}/api/v1/auth/whoami")
        assert '"method":"cookie"' in page.content().replace(" ", "")
        cookies = {c["name"]: c for c in page.context.cookies()}
        session_cookie = cookies["ah_session"]
        assert session_cookie["httpOnly"]
        assert session_cookie["sameSite"] == "Strict"
        assert operator not in session_cookie["value"]  # the cookie refers to the key, never holds it
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it

        first = page.evaluate("""(url) => new Promise((resolve, reject) => {
            const source = new EventSource(url);
            source.addEventListener("status", (e) => { source.close(); resolve(JSON.parse(e.data)); });
            source.onerror = () => { source.close(); reject(new Error("EventSource failed")); };
        })""", f"/api/v1/sessions/{session_id}/events")
        assert first["sessionId"] == session_id
        assert first["status"] == "running"

        # Same-origin writes with JSON work on the cookie; a form-like body is refused (CSRF).
        status = page.evaluate("""async (id) => {
            const json = await fetch(`/api/v1/sessions/${id}/pause`, {method: "POST",
                headers: {"Content-Type": "application/json"}});
            const form = await fetch(`/api/v1/sessions/${id}/resume`, {method: "POST",
                headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "a=1"});
            return [json.status, form.status];
        }""", session_id)
        assert status == [200, 403]

        # Signing out ends it.
        after = page.evaluate("""async () => {
            await fetch("/api/v1/auth/logout", {method: "POST"});
            return (await fetch("/api/v1/sessions")).status;
        }""")
        assert after == 401

        with daemon.client(headers={"Authorization": f"ApiKey {admin}"}) as client:
            logins = client.get(f"{API}/audit", params={"action": "auth.login"}).json()["items"]
            pauses = client.get(f"{API}/audit", params={"action": "session.pause"}).json()["items"]
        assert sorted(e["outcome"] for e in logins) == ["denied", "ok"]
        assert pauses[0]["outcome"] == "ok"
        assert pauses[0]["target"] == f"session:{session_id}"
    finally:
        daemon.stop()
