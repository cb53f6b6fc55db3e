"""Rate limits on a real daemon: a token bucket per principal (and per address for callers without
a valid credential), a separate bucket shared by task creation and prompts, 429 + Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import DaemonProcess, scenario_task
from tests.security.conftest import API, create_key


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    data = tmp_path_factory.mktemp("limited") / "data"
    keys = {"admin": create_key(data, "admin")}
    # 5 requests at once, then one every 5 s: the test outpaces the refill by far.
    env = {"AH_AUTH": "required", "AH_RATE_LIMIT_PER_SECOND": "0.2", "AH_RATE_LIMIT_BURST": "5"}
    proc = DaemonProcess(data, env=env).start()
    with proc.client(headers=_auth(keys["admin"])) as admin:  # 3 of the admin's 5 requests
        for name in ("hammer", "bystander", "writer"):
            keys[name] = admin.post(f"{API}/keys", json={"role": "operator", "name": name}).json()["key"]
    yield proc, keys
    proc.stop()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {key}"}


def test_hammering_one_principal_gets_429_while_another_is_served(
        limited: tuple[DaemonProcess, dict[str, str]]) -> None:
    daemon, keys = limited
    with daemon.client(headers=_auth(keys["hammer"])) as hammer, \
            daemon.client(headers=_auth(keys["bystander"])) as bystander:
        answers = [hammer.get(f"{API}/sessions") for _ in range(12)]
        codes = [r.status_code for r in answers]
        assert codes[:5] == [200] * 5, codes
        assert codes[5:] == [429] * 7, codes
        refused = answers[-1]
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert 1 <= int(refused.headers["Retry-After"]) <= 5
        assert refused.json()["status"] == 429
        assert bystander.get(f"{API}/sessions").status_code == 200
    with daemon.client(headers=_auth(keys["admin"])) as admin:
        # Refusals for rate are not audited: a flood must not become a flood of writes.
        assert refused.headers["X-Request-ID"] not in [
            e["requestId"] for e in admin.get(f"{API}/audit", params={"perPage": 200}).json()["items"]]


def test_task_creation_and_prompts_share_a_bucket_apart_from_reads(
        limited: tuple[DaemonProcess, dict[str, str]]) -> None:
    daemon, keys = limited
    with daemon.client(headers=_auth(keys["writer"])) as writer:
        created = [writer.post(f"{API}/tasks", json=scenario_task("long_running", speed=1)) for _ in range(5)]
        assert [r.status_code for r in created] == [201] * 5
        session_id = created[0].json()["id"]
        sixth = writer.post(f"{API}/tasks", json=scenario_task("demo"))
        assert sixth.status_code == 429
        assert int(sixth.headers["Retry-After"]) >= 1
        prompt = writer.post(f"{API}/sessions/{session_id}/prompt", json={"message": "hello"})
        assert prompt.status_code == 429
        # Reads have their own bucket, still full.
        assert writer.get(f"{API}/sessions/{session_id}").status_code == 200
    # The sessions end with the daemon (the module fixture stops it).


def test_guessing_credentials_is_rate_limited_by_address(limited: tuple[DaemonProcess, dict[str, str]]) -> None:
    daemon, _ = limited
    with daemon.client() as guesser:
        codes = [guesser.get(f"{API}/sessions", headers={"Authorization": f"ApiKey ah_guess{i}"}).status_code
                 for i in range(8)]
    assert codes[:5] == [401] * 5, codes
    assert set(codes[5:]) == {429}, codes
