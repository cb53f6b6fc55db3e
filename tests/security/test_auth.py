"""Authentication and authorization on a real daemon with ``--auth required``: 401 on every
protected route, roles, tenants, API keys, JWTs, the WebSocket, the audit trail of each."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.harness import read_sse, scenario_task, wait_status
from tests.security.conftest import API, AUDIENCE, HS_SECRET, Secured, audited, cli, rsa_key_pair

FAKE_ID = "01J00000000000000000000000"

#: Credentials that must all be refused: none, and every way of being wrong.
BAD_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "ApiKey ah_" + "x" * 43},
    {"Authorization": "ApiKey"},
    {"Authorization": "Bearer not.a.jwt"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="},
    {"Cookie": "ah_session=v1.01J00000000000000000000000.9999999999.forged"},
]


def protected_routes(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    routes = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if op.get("x-required-role"):
                url = path
                for param in op.get("parameters", []):
                    if param["in"] == "path":
                        url = url.replace("{" + param["name"] + "}", FAKE_ID)
                routes.append((method.upper(), url, op["x-required-role"]))
    return routes


def test_every_protected_route_refuses_a_missing_or_wrong_credential(secured: Secured) -> None:
    with secured.client() as anonymous:
        doc = anonymous.get(f"{API}/openapi.json").json()
        routes = protected_routes(doc)
        assert len(routes) >= 15
        assert ("POST", f"{API}/keys", "admin") in routes
        for method, url, _ in routes:
            for headers in BAD_CREDENTIALS:
                r = anonymous.request(method, url, headers={**headers, "Content-Type": "application/json"},
                                      content=b"{}" if method in ("POST", "PUT", "PATCH") else None)
                assert r.status_code == 401, (method, url, headers, r.text)
                assert r.headers["Content-Type"].startswith("application/problem+json")
                assert "ApiKey" in r.headers["WWW-Authenticate"]
                assert "Bearer" in r.headers["WWW-Authenticate"]
                assert r.json()["status"] == 401
                assert r.json()["detail"]
        # Public routes stay open.
        for path in ("/healthz", "/readyz", "/version", "/openapi.json"):
            assert anonymous.get(API + path).status_code == 200, path
        assert anonymous.get("/api/docs").status_code == 200
        login_page = anonymous.get("/login")
        assert login_page.status_code == 200
        assert "API key" in login_page.text
        failure = anonymous.get(f"{API}/sessions", headers={"Authorization": "ApiKey ah_wrong"})
    with secured.client("admin") as admin:
        entry = audited(admin, failure.headers["X-Request-ID"])
    assert (entry["action"], entry["outcome"], entry["status"]) == ("auth.failure", "denied", 401)
    assert entry["target"] == f"GET {API}/sessions"
    assert entry["client"] == "127.0.0.1"


def test_a_viewer_reads_but_cannot_create_pause_or_delete(secured: Secured) -> None:
    with secured.client("operator") as operator, secured.client("viewer") as viewer, \
            secured.client("admin") as admin:
        session_id = operator.post(f"{API}/tasks", json=scenario_task("long_running", speed=1)).json()["id"]
        wait_status(operator, session_id, "running")
        assert viewer.get(f"{API}/sessions/{session_id}").status_code == 200
        assert viewer.get(f"{API}/sessions").json()["total"] >= 1
        refusals = [
            viewer.post(f"{API}/tasks", json=scenario_task("demo")),
            viewer.post(f"{API}/sessions/{session_id}/pause"),
            viewer.post(f"{API}/sessions/{session_id}/prompt", json={"message": "hi"}),
            viewer.delete(f"{API}/sessions/{session_id}"),
            viewer.get(f"{API}/keys"),
            viewer.get(f"{API}/audit"),
        ]
        for r in refusals:
            assert r.status_code == 403, r.request.url
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert "role" in r.json()["detail"]
        assert viewer.get(f"{API}/sessions/{session_id}").json()["status"] == "running"
        denied = audited(admin, refusals[0].headers["X-Request-ID"])
        assert (denied["action"], denied["outcome"], denied["status"]) == ("task.create", "denied", 403)

        # The operator can do all of it.
        paused = operator.post(f"{API}/sessions/{session_id}/pause")
        assert paused.status_code == 200
        assert paused.json()["status"] == "paused"
        resumed = operator.post(f"{API}/sessions/{session_id}/resume")
        assert resumed.status_code == 200
        assert resumed.json()["status"] == "running"
        deleted = operator.delete(f"{API}/sessions/{session_id}")
        assert deleted.status_code == 204
        assert operator.get(f"{API}/sessions/{session_id}").status_code == 404
        for r, action in ((paused, "session.pause"), (resumed, "session.resume"), (deleted, "session.delete")):
            entry = audited(admin, r.headers["X-Request-ID"])
            assert (entry["action"], entry["outcome"]) == (action, "ok")
            assert entry["target"] == f"session:{session_id}"
            assert entry["principal"].startswith("key:")
        # ... but not keys or the audit log: those are the admin's.
        assert operator.get(f"{API}/keys").status_code == 403
        assert operator.post(f"{API}/keys", json={"role": "admin"}).status_code == 403
        assert operator.get(f"{API}/audit").status_code == 403


def test_task_creation_is_audited_with_the_sessions_it_created(secured: Secured) -> None:
    with secured.client("operator") as operator, secured.client("admin") as admin:
        created = operator.post(f"{API}/tasks", json=scenario_task("demo", speed=100, count=2))
        assert created.status_code == 201
        entry = audited(admin, created.headers["X-Request-ID"])
        me = operator.get(f"{API}/auth/whoami").json()
    assert (entry["action"], entry["outcome"], entry["status"]) == ("task.create", "ok", 201)
    assert entry["target"] == " ".join(f"session:{i}" for i in created.json()["session_ids"])
    assert entry["principal"] == me["subject"]
    assert me["role"] == "operator"


def test_another_tenants_sessions_do_not_exist(secured: Secured) -> None:
    with secured.client("op_a") as a, secured.client("op_b") as b, secured.client("admin") as admin:
        # Tenant B opens the dashboard feed before either creates anything.
        with b.stream("GET", f"{API}/events", headers={"Accept": "text/event-stream"}) as feed:
            # A names tenant B in the body: the key's tenant wins.
            mine = a.post(f"{API}/tasks", json=scenario_task("long_running", speed=1, tenantId="tenant-b"))
            session_id = mine.json()["id"]
            assert a.get(f"{API}/sessions/{session_id}").json()["tenantId"] == "tenant-a"
            theirs = b.post(f"{API}/tasks", json=scenario_task("demo", speed=100)).json()["id"]
            seen = []
            for _, _, data in read_sse(feed):
                seen.append(data["sessionId"])
                if data["sessionId"] == theirs:
                    break
        assert session_id not in seen  # A's creation came first; B never saw it

        for method, path in [("GET", ""), ("GET", "/events?page=1"), ("GET", "/logs"), ("GET", "/info"),
                             ("POST", "/pause"), ("POST", "/resume"), ("POST", "/stop"), ("DELETE", "")]:
            r = b.request(method, f"{API}/sessions/{session_id}{path}")
            assert r.status_code == 404, (method, path, r.text)
        assert b.post(f"{API}/sessions/{session_id}/prompt", json={"message": "x"}).status_code == 404
        with b.stream("GET", f"{API}/sessions/{session_id}/events",
                      headers={"Accept": "text/event-stream"}) as stream:
            assert stream.status_code == 404
        assert session_id not in [s["id"] for s in b.get(f"{API}/sessions", params={"perPage": 200}).json()["items"]]
        assert session_id not in [s["id"] for s in b.get(f"{API}/sessions",
                                                         params={"tenantId": "tenant-a"}).json()["items"]]
        # A sees it; an admin without a tenant sees everything; a tenant-b admin does not.
        assert a.get(f"{API}/sessions/{session_id}").status_code == 200
        assert admin.get(f"{API}/sessions/{session_id}").status_code == 200
        with secured.client("admin_b") as admin_b:
            assert admin_b.get(f"{API}/sessions/{session_id}").status_code == 404
        # A bearer token's tenant claim confines it the same way.
        bearer = {"Authorization": f"Bearer {secured.token(tenant='tenant-b', roles=['admin'])}"}
        assert b.get(f"{API}/sessions/{session_id}", headers=bearer).status_code == 404
        assert a.delete(f"{API}/sessions/{session_id}").status_code == 204


def test_no_session_route_tells_another_tenants_session_from_a_missing_one(secured: Secured) -> None:
    with secured.client("op_a") as a, secured.client("op_b") as b:
        session_id = a.post(f"{API}/tasks", json=scenario_task("long_running", speed=1)).json()["id"]
        wait_status(a, session_id, "running")
        paths = b.get(f"{API}/openapi.json").json()["paths"]
        checked = 0
        for path, ops in paths.items():
            if "{session_id}" not in path and "{workspace_id}" not in path:
                continue
            for method in ops:
                def call(ident: str, method: str = method, path: str = path) -> httpx.Response:
                    url = path.replace("{session_id}", ident).replace("{workspace_id}", ident)
                    url = url.replace("{path}", "README.md")
                    return b.request(method.upper(), url, json={} if method in ("post", "put", "patch") else None,
                                     headers={"Accept": "application/json"})

                foreign, missing = call(session_id), call(FAKE_ID)
                assert foreign.status_code == missing.status_code, (method, path, foreign.text)
                assert foreign.status_code >= 400
                assert foreign.json()["status"] == foreign.status_code
                checked += 1
        assert checked >= 10
        # Nothing B sent touched A's session.
        assert a.get(f"{API}/sessions/{session_id}").json()["status"] == "running"
        assert a.delete(f"{API}/sessions/{session_id}").status_code == 204


def test_drafts_of_another_tenant_do_not_exist(secured: Secured) -> None:
    with secured.client("op_a") as a, secured.client("op_b") as b:
        if "/api/v1/drafts" not in a.get(f"{API}/openapi.json").json()["paths"]:
            pytest.skip("drafts are not served by this build")
        draft = a.post(f"{API}/drafts", json={"prompt": "secret plan"}).json()["id"]
        assert b.get(f"{API}/drafts/{draft}").status_code == 404
        assert b.put(f"{API}/drafts/{draft}", json={"prompt": "x"}).status_code == 404
        assert b.delete(f"{API}/drafts/{draft}").status_code == 404
        assert draft not in [d["id"] for d in b.get(f"{API}/drafts").json()["items"]]
        assert a.get(f"{API}/drafts/{draft}").status_code == 200


def test_only_an_admin_manages_keys_and_revocation_is_immediate(secured: Secured) -> None:
    data_dir = secured.daemon.data_dir
    with secured.client("admin") as admin:
        created = admin.post(f"{API}/keys", json={"role": "viewer", "name": "short-lived"})
        assert created.status_code == 201
        key, key_id = created.json()["key"], created.json()["id"]
        listed = admin.get(f"{API}/keys", params={"perPage": 200}).json()["items"]
        assert key_id in [k["id"] for k in listed]
        assert not any("key" in k or "key_hash" in k for k in listed)  # secrets never come back
        assert all(secured.keys["admin"] not in json.dumps(k) for k in listed)
        with httpx.Client(base_url=secured.url, headers={"Authorization": f"ApiKey {key}"}) as holder:
            assert holder.get(f"{API}/sessions").status_code == 200
            # Revoked from the command line while the daemon runs: the next request fails.
            revoked = cli("keys", "revoke", created.json()["prefix"], "--data-dir", str(data_dir))
            assert key_id in revoked.stdout
            assert holder.get(f"{API}/sessions").status_code == 401
        shown = json.loads(cli("keys", "list", "--json", "--data-dir", str(data_dir)).stdout)["items"]
        assert next(k for k in shown if k["id"] == key_id)["revoked"] is True
        assert next(k for k in shown if k["name"] == "root")["lastUsedAt"] is not None

        # Revoking over the API, and what is audited.
        other = admin.post(f"{API}/keys", json={"role": "operator"}).json()
        gone = admin.delete(f"{API}/keys/{other['id']}")
        assert gone.status_code == 204
        assert admin.get(f"{API}/keys/{other['id']}").json()["revoked"] is True
        assert admin.delete(f"{API}/keys/{FAKE_ID}").status_code == 404
        entry = audited(admin, gone.headers["X-Request-ID"])
        assert (entry["action"], entry["target"], entry["outcome"]) == ("key.revoke", f"key:{other['id']}", "ok")
        entry = audited(admin, created.headers["X-Request-ID"])
        assert (entry["action"], entry["target"], entry["outcome"]) == ("key.create", f"key:{key_id}", "ok")
        assert admin.post(f"{API}/keys", json={"role": "root"}).status_code == 400

    with secured.client("admin_b") as admin_b:
        # A tenant's admin manages that tenant's keys only.
        refused = admin_b.post(f"{API}/keys", json={"role": "viewer", "tenantId": "tenant-a"})
        assert refused.status_code == 403
        assert "tenantId" in refused.json()["errors"]
        own = admin_b.post(f"{API}/keys", json={"role": "viewer"}).json()
        assert own["tenantId"] == "tenant-b"
        assert {k["tenantId"] for k in admin_b.get(f"{API}/keys").json()["items"]} == {"tenant-b"}
        assert admin_b.delete(f"{API}/keys/{key_id}").status_code == 404


@pytest.mark.parametrize(
    ("claims", "alg", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "HS256", "expired"),
        ({"aud": "someone-else"}, "HS256", "audience"),
        ({"iss": "https://evil.example"}, "HS256", "issuer"),
        ({"exp": None}, "HS256", "exp"),
        ({"aud": None}, "HS256", "aud"),
    ],
)
def test_invalid_bearer_tokens_are_refused(secured: Secured, claims: dict[str, Any], alg: str,
                                           reason: str) -> None:
    with secured.client() as c:
        r = c.get(f"{API}/sessions", headers={"Authorization": f"Bearer {secured.token(alg, **claims)}"})
    assert r.status_code == 401, r.text
    assert reason in r.json()["detail"], r.text


def test_wrongly_signed_bearer_tokens_are_refused(secured: Secured) -> None:
    import jwt

    base = {"sub": "mallory", "roles": ["admin"], "exp": int(time.time()) + 600,
            "iss": "https://issuer.example.test", "aud": AUDIENCE}
    stranger, _ = rsa_key_pair()
    public_pem = (secured.daemon.data_dir.parent / "jwt.pub").read_bytes()
    forged = [
        jwt.encode(base, "another-secret-0123456789abcdef-0123456789", algorithm="HS256"),
        jwt.encode(base, stranger, algorithm="RS256"),
        jwt.encode(base, None, algorithm="none"),
        # Algorithm confusion: HMAC keyed with the daemon's public key.
        _hmac_token(base, public_pem),
        secured.token()[:-4] + "AAAA",
    ]
    with secured.client() as c:
        for token in forged:
            r = c.get(f"{API}/sessions", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (token, r.text)


def _hmac_token(claims: dict[str, Any], key: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(key, signing.encode(), hashlib.sha256).digest())


def test_valid_hs256_and_rs256_tokens_are_accepted_with_their_roles(secured: Secured) -> None:
    with secured.client() as c:
        for alg in ("HS256", "RS256"):
            token = secured.token(alg, sub=f"alice-{alg}", roles=["viewer", "operator"], tenant="tenant-j")
            me = c.get(f"{API}/auth/whoami", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert me.json() | {"authRequired": True} == {
                "subject": f"alice-{alg}", "role": "operator", "roles": ["viewer", "operator"],
                "tenantId": "tenant-j", "method": "jwt", "authRequired": True}
        viewer = {"Authorization": f"Bearer {secured.token('RS256', roles=None, role='viewer')}"}
        assert c.get(f"{API}/sessions", headers=viewer).status_code == 200
        assert c.post(f"{API}/tasks", json=scenario_task("demo"), headers=viewer).status_code == 403
        nobody = {"Authorization": f"Bearer {secured.token(roles=['intern'])}"}
        assert c.get(f"{API}/sessions", headers=nobody).status_code == 403
        # An API key is also accepted as a bearer token.
        assert c.get(f"{API}/sessions", headers={"Authorization": f"Bearer {secured.keys['viewer']}"}
                     ).status_code == 200
    assert len(HS_SECRET) >= 32


async def test_the_websocket_needs_a_credential_and_commands_need_an_operator(secured: Secured) -> None:
    with secured.client("operator") as operator, secured.client("admin") as admin:
        session_id = operator.post(f"{API}/tasks", json=scenario_task("long_running", speed=1)).json()["id"]
        wait_status(operator, session_id, "running")
        url = secured.url.replace("http://", "ws://") + f"{API}/sessions/{session_id}/ws"
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url):
                pass
        assert rejected.value.status_code == 401

        async def command(key: str, op: str) -> dict[str, Any]:
            async with open_websocket_url(url, extra_headers=[("Authorization", f"ApiKey {key}")]) as ws:
                first = json.loads(await ws.get_message())
                assert first["type"] == "status"
                await ws.send_message(json.dumps({"op": op}))
                with trio.fail_after(20):
                    while "ok" not in (frame := json.loads(await ws.get_message())):
                        pass
                return frame

        refused = await command(secured.keys["viewer"], "pause")
        assert refused["ok"] is False
        assert refused["error"]["status"] == 403
        assert operator.get(f"{API}/sessions/{session_id}").json()["status"] == "running"
        assert (await command(secured.keys["operator"], "pause"))["ok"] is True
        assert operator.get(f"{API}/sessions/{session_id}").json()["status"] == "paused"
        with secured.client("op_b") as b:
            b_key = b.headers["Authorization"].split()[1]
        with pytest.raises(ConnectionClosed) as closed:
            async with open_websocket_url(url, extra_headers=[("Authorization", f"ApiKey {b_key}")]) as ws:
                await ws.get_message()
        assert closed.value.reason.code == 4404  # another tenant's session does not exist
        entries = admin.get(f"{API}/audit", params={"action": "session.pause", "perPage": 200}).json()["items"]
        mine = [e for e in entries if e["target"] == f"session:{session_id}" and e["detail"]["method"] == "WS"]
        assert sorted((e["outcome"], e["status"]) for e in mine) == [("denied", 403), ("ok", 200)]
        assert operator.delete(f"{API}/sessions/{session_id}").status_code == 204


def test_event_streams_per_principal_are_capped(secured: Secured) -> None:
    # The fixture allows 3 open streams per principal.
    with secured.client("viewer") as viewer, secured.client("operator") as op:
        headers = {"Accept": "text/event-stream"}
        streams = [viewer.stream("GET", f"{API}/events", headers=headers) for _ in range(3)]
        opened = [s.__enter__() for s in streams]
        try:
            assert [r.status_code for r in opened] == [200, 200, 200]
            over = viewer.get(f"{API}/events", headers=headers)
            assert over.status_code == 429
            assert int(over.headers["Retry-After"]) >= 1
            assert over.headers["Content-Type"].startswith("application/problem+json")
            # Another principal has its own allowance.
            with op.stream("GET", f"{API}/events", headers=headers) as theirs:
                assert theirs.status_code == 200
        finally:
            streams[0].__exit__(None, None, None)
        # The closed stream's slot comes back once the daemon sees the client leave.
        deadline = time.monotonic() + 10
        while True:
            with viewer.stream("GET", f"{API}/events", headers=headers) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "a closed stream's slot was never given back"
            time.sleep(0.05)  # nothing the client can wait on: the release happens in the daemon
        for s in streams[1:]:
            s.__exit__(None, None, None)


def test_secrets_never_reach_the_log(secured: Secured) -> None:
    # The daemon of this module logs at debug level, the most talkative it gets.
    log = secured.daemon.stderr_path.read_text(errors="replace")
    assert "listening on" in log
    for name, key in secured.keys.items():
        assert key not in log, name
        assert key[len("ah_") + 8:] not in log, name
    assert HS_SECRET not in log
    assert "ah_session=" not in log
    assert "Bearer ey" not in log


def test_ah_audit_reads_the_log_locally_and_remotely(secured: Secured) -> None:
    with secured.client() as anonymous:
        failure = anonymous.get(f"{API}/sessions", headers={"Authorization": "ApiKey ah_nope"})
    request_id = failure.headers["X-Request-ID"]
    local = json.loads(cli("audit", "--json", "--action", "auth.*", "--outcome", "denied", "--limit", "200",
                           "--data-dir", str(secured.daemon.data_dir)).stdout)
    assert request_id in [e["requestId"] for e in local["items"]]
    assert {e["action"] for e in local["items"]} == {"auth.failure"}
    remote = cli("audit", "--remote-server", secured.url, "--action", "auth.failure", "--limit", "200",
                 env_key=secured.keys["admin"])
    assert f"GET {API}/sessions" in remote.stdout
    assert "denied" in remote.stdout
    refused = cli("audit", "--remote-server", secured.url, env_key=secured.keys["viewer"], check=False)
    assert refused.returncode != 0
    assert "403" in refused.stderr
