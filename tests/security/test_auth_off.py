"""With auth off (the local default) nothing asks for a credential and nothing is limited, unless
limits by address are asked for."""

from __future__ import annotations

from pathlib import Path

from tests.harness import DaemonProcess, scenario_task
from tests.security.conftest import API


def test_local_use_needs_no_credential_and_meets_no_limit(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        me = c.get(f"{API}/auth/whoami").json()
        assert me == {"subject": "local", "role": "admin", "roles": ["viewer", "operator", "admin"],
                      "tenantId": None, "method": "none", "authRequired": False}
        assert all(c.get(f"{API}/sessions").status_code == 200 for _ in range(60))  # past any default burst
        created = c.post(f"{API}/tasks", json=scenario_task("demo", speed=100))
        assert created.status_code == 201
        login = c.post(f"{API}/auth/login", json={"apiKey": "ah_x"})
        assert login.status_code == 409
        assert "off" in login.json()["detail"]
        # Everyone is the local user on loopback: nothing to audit.
        assert c.get(f"{API}/audit").json()["total"] == 0


def test_limits_by_address_when_asked_for(tmp_path: Path) -> None:
    env = {"AH_RATE_LIMIT_UNAUTHENTICATED": "true", "AH_RATE_LIMIT_PER_SECOND": "0.2", "AH_RATE_LIMIT_BURST": "3"}
    daemon = DaemonProcess(tmp_path / "data", env=env).start()
    try:
        with daemon.client() as c:
            codes = [c.get(f"{API}/sessions").status_code for _ in range(5)]
            assert c.get(f"{API}/healthz").status_code == 200  # public routes are never limited
    finally:
        daemon.stop()
    assert codes == [200, 200, 200, 429, 429]
