"""Bad requests about sessions: every bad field of a task gets a 400 Problem+JSON naming it (and
creates nothing), an unavailable agent a 422, and an unknown session id a 404 on every session route.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.integration.session_helpers import API, sessions_client, sessions_daemon  # noqa: F401 (fixtures c, d)

# -- bad input -------------------------------------------------------------------------------------

def _task(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": "valid", "agents": [{"type": "command", "settings": {"command": ["true"]}}]}
    body.update(changes)
    return body


def _agent(**changes: Any) -> dict[str, Any]:
    return _task(agents=[{"type": "command", "settings": {"command": ["true"]}, **changes}])


BAD_TASKS: list[tuple[str, dict[str, Any], str]] = [
    ("prompt missing", {"agents": [{"type": "command", "settings": {"command": ["true"]}}]}, "prompt"),
    ("prompt empty", _task(prompt="  "), "prompt"),
    ("prompt not text", _task(prompt=42), "prompt"),
    ("prompt no blocks", _task(prompt=[]), "prompt"),
    ("prompt block kind", _task(prompt=[{"type": "video", "uri": "x"}]), "prompt[0].type"),
    ("prompt text block without text", _task(prompt=[{"type": "text"}]), "prompt[0]"),
    ("prompt too long", _task(prompt="x" * (256 * 1024 + 1)), "prompt"),
    ("no agent", _task(agents=[]), "agents"),
    ("neither agent nor agents", {"prompt": "x"}, "agents"),
    ("agents not a list", _task(agents={"type": "command"}), "agents"),
    ("agents[0].type unknown", _agent(type="no-such-agent"), "agents[0].type"),
    ("agents[0].type missing", _task(agents=[{"settings": {}}]), "agents[0].type"),
    ("agent.type unknown", {"prompt": "x", "agent": {"type": "no-such-agent", "version": "latest"}}, "agent.type"),
    ("count zero", _agent(count=0), "agents[0].count"),
    ("count too many", _agent(count=51), "agents[0].count"),
    ("count not a number", _agent(count="three"), "agents[0].count"),
    ("version too long", _agent(version="v" * 65), "agents[0].version"),
    ("settings not an object", _agent(settings=["true"]), "agents[0].settings"),
    ("command not an argv", _agent(settings={"command": "make test"}), "agents[0].settings.command"),
    ("settings.speed", {"prompt": "x", "agents": [{"type": "scenario", "settings": {"speed": -1}}]},
     "agents[0].settings.speed"),
    ("settings.scenario", {"prompt": "x", "agents": [{"type": "scenario", "settings": {"scenario": "../etc"}}]},
     "agents[0].settings.scenario"),
    ("repo.url missing for git", _task(repo={"mode": "git"}), "repo.url"),
    ("repo.url no such directory", _task(repo={"mode": "git", "url": "/no/such/repo"}), "repo.url"),
    ("repo.url too long", _task(repo={"url": "https://x/" + "a" * 5000}), "repo.url"),
    ("repo.mode", _task(repo={"mode": "svn", "url": "https://example.com/r.git"}), "repo.mode"),
    ("repo.branch", _task(repo={"url": "https://example.com/r.git", "branch": "--upload-pack=x"}), "repo.branch"),
    ("repo not an object", _task(repo="https://example.com/r.git"), "repo"),
    ("runtime.type", _task(runtime={"type": "docker"}), "runtime.type"),
    ("runtime.resources.cpu", _task(runtime={"type": "local", "resources": {"cpu": 0}}), "runtime.resources.cpu"),
    ("delivery.mode", _task(delivery={"mode": "fax"}), "delivery.mode"),
    ("webhooks[0].url", _task(webhooks=[{"event": "session.ended", "url": "ftp://example.com/hook"}]),
     "webhooks[0].url"),
    ("webhooks[0].event", _task(webhooks=[{"event": "", "url": "https://example.com/hook"}]), "webhooks[0].event"),
    ("webhooks not a list", _task(webhooks={"url": "https://example.com"}), "webhooks"),
    ("labels not strings", _task(labels={"team": 7}), "labels.team"),
    ("labels not an object", _task(labels=["a"]), "labels"),
    ("timeoutSeconds negative", _task(timeoutSeconds=-1), "timeoutSeconds"),
    ("timeoutSeconds too long", _task(timeoutSeconds=8 * 86400), "timeoutSeconds"),
    ("timeoutSeconds not a number", _task(timeoutSeconds="soon"), "timeoutSeconds"),
    ("tenantId too long", _task(tenantId="t" * 129), "tenantId"),
    ("tenant_id too long", _task(tenant_id="t" * 129), "tenant_id"),  # named as the client spelled it
    ("projectId too long", _task(projectId="p" * 129), "projectId"),
    ("body not an object", [], "body"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in BAD_TASKS], ids=[n for n, _, _ in BAD_TASKS])
def test_every_field_of_a_task_is_validated(c: httpx.Client, body: Any, field: str) -> None:
    before = c.get(f"{API}/sessions", params={"perPage": 1}).json()["total"]
    r = c.post(f"{API}/tasks", json=body)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 400
    assert isinstance(problem["errors"], dict)
    assert field in problem["errors"], problem
    assert all(isinstance(m, str) and m for m in problem["errors"][field])
    assert c.get(f"{API}/sessions", params={"perPage": 1}).json()["total"] == before  # nothing was created


def test_an_unavailable_agent_is_422_naming_it(c: httpx.Client) -> None:
    r = c.post(f"{API}/tasks", json={"prompt": "x", "agents": [{"type": "claude-code"}]})
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "agents[0].type" in r.json()["errors"]
    assert "claude" in r.json()["detail"]


def _example(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    """A small valid value for a (simple) JSON schema: what a request to an unknown id carries."""
    if "$ref" in schema:
        return _example(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for key in ("anyOf", "oneOf"):
        if key in schema and "properties" not in schema:  # (on an object, they only say what is required)
            options = [s for s in schema[key] if s.get("type") != "null"]
            return _example(options[0], components)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        # Required fields, plus the text a prompt or a label needs to be meaningful.
        names = set(schema.get("required", [])) | ({"prompt", "message", "label"} & set(props))
        return {n: _example(props[n], components) for n in names}
    return {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": []}[kind]


def test_unknown_session_ids_are_404_on_every_session_route(c: httpx.Client) -> None:
    doc = c.get(f"{API}/openapi.json").json()
    components = doc["components"]["schemas"]
    unknown = "01JUNKNOWNSESSI0NID0000000"
    checked = []
    for path, operations in doc["paths"].items():
        if "{session_id}" not in path:
            continue
        url = re.sub(r"\{[^}]+\}", lambda m: unknown if m.group(0) == "{session_id}" else "README.md", path)
        for method, op in operations.items():
            # A valid request in every other respect: required query parameters and body fields.
            kwargs: dict[str, Any] = {"params": {p["name"]: _example(p["schema"], components)
                                                 for p in op.get("parameters", [])
                                                 if p["in"] == "query" and p.get("required")}}
            if "requestBody" in op:
                kwargs["json"] = _example(op["requestBody"]["content"]["application/json"]["schema"], components)
            r = c.request(method.upper(), url, **kwargs)
            assert r.status_code == 404, f"{method.upper()} {path}: {r.status_code} {r.text}"
            assert r.headers["Content-Type"].startswith("application/problem+json"), path
            assert r.json()["status"] == 404
            checked.append(f"{method} {path}")
    assert len(checked) >= 9  # at least this module's routes: get, delete, pause, resume, stop, prompt, ...
    with c.stream("GET", f"{API}/sessions/{unknown}/events", headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 404  # never an endless stream
