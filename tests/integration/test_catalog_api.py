"""Catalogues (agents and their settings schemas, runtimes, executors) and repositories, projects and
workspaces over a real daemon; repositories come from submitted tasks on real local git repos."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from tests.harness import DaemonProcess, command_task
from tests.integration.workspace_helpers import create, follow, git, is_terminal, make_repo


def test_agents_once_each_with_schema_urls(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        doc = c.get("/api/v1/agents").json()
        types = [a["type"] for a in doc["items"]]
        assert sorted(types) == sorted(set(types))  # an alias (mock, claude) is never a second entry
        assert {"scenario", "claude-code", "codex", "command"} <= set(types)
        assert "mock" not in types
        agents = {a["type"]: a for a in doc["items"]}
        assert "mock" in agents["scenario"]["aliases"]
        assert agents["scenario"]["available"] is True
        assert agents["command"]["available"] is True
        assert agents["scenario"]["versions"]
        for agent in doc["items"]:
            assert agent["settingsSchemaRef"] == f"/api/v1/schemas/agents/{agent['type']}.json"
            schema = c.get(agent["settingsSchemaRef"])
            assert schema.status_code == 200, agent["type"]
            assert schema.json()["type"] == "object"
            assert "properties" in schema.json()
        assert c.get("/api/v1/schemas/agents/command.json").json()["required"] == ["command"]
        assert c.get("/api/v1/schemas/agents/mock.json").json()["$id"].endswith("/scenario.json")
        missing = c.get("/api/v1/schemas/agents/nope.json")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem")


def test_command_agent_is_listed_unavailable_when_not_allowed(tmp_path: Path) -> None:
    locked = DaemonProcess(tmp_path / "locked").start()
    try:
        with locked.client() as c:
            agents = {a["type"]: a for a in c.get("/api/v1/agents").json()["items"]}
        assert agents["command"]["available"] is False
        assert "allow" in agents["command"]["unavailableReason"]
        assert agents["scenario"]["available"] is True
    finally:
        locked.stop()


def test_runtimes_and_executors(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        runtimes = c.get("/api/v1/runtimes").json()["items"]
        sid = create(c, command_task(["sh", "-c", "echo up; read x"]))
        follow(c, sid, lambda e: e["type"] == "log" and e["message"] == "up")
        executors = c.get("/api/v1/executors").json()["items"]
        c.post(f"/api/v1/sessions/{sid}/stop")
        follow(c, sid, is_terminal)
    assert {r["type"] for r in runtimes} >= {"local", "devcontainer", "disabled"}
    assert all(isinstance(r["sandboxProfiles"], list) for r in runtimes)
    [host] = executors
    assert host["os"] == platform.system().lower()
    assert host["arch"] == platform.machine()
    assert {"git", "copy"} <= set(host["snapshotCapabilities"])
    assert host["health"] == "ok"
    assert host["maxConcurrentTasks"] == 50
    assert host["runningTasks"] >= 1
    assert host["id"]


def test_repositories_indexed_from_tasks_with_branches_and_files(daemon: DaemonProcess, tmp_path: Path) -> None:
    repo = tmp_path / "proj" / "widget"
    head = make_repo(repo, {"README.md": "hi\n", "src/main.py": "print(1)\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "feature.txt").write_text("f\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    feature = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    with daemon.client() as c:
        sid = create(c, command_task(["true"], repo={"mode": "git", "url": str(repo)}, projectId="proj-widget"))
        follow(c, sid, is_terminal)
        listing = c.get("/api/v1/repositories", params={"perPage": 200}).json()
        [item] = [r for r in listing["items"] if r["url"] == str(repo)]
        rid = item["id"]
        one = c.get(f"/api/v1/repositories/{rid}").json()
        branches = c.get(f"/api/v1/repositories/{rid}/branches").json()
        files = c.get(f"/api/v1/repositories/{rid}/files").json()
        feature_files = c.get(f"/api/v1/repositories/{rid}/files", params={"branch": "feature"}).json()
        no_branch = c.get(f"/api/v1/repositories/{rid}/files", params={"branch": "nope"})
        repos = c.get("/api/v1/repos", params={"projectId": "proj-widget"}).json()
        projects = c.get("/api/v1/projects").json()["items"]
        unknown = c.get("/api/v1/repositories/NOPE")
        # Registering explicitly: once (201), then the same repository again (200).
        other = tmp_path / "other"
        make_repo(other, {"x": "1\n"})
        registered = c.post("/api/v1/repositories", json={"url": str(other), "name": "other-repo"})
        twice = c.post("/api/v1/repositories", json={"url": str(other)})
        bad = c.post("/api/v1/repositories", json={})
    assert listing["pagination"]["total"] >= 1
    assert item["name"] == "proj/widget"
    assert one["id"] == rid
    assert one["url"] == str(repo)
    assert branches["repositoryId"] == rid
    by_name = {b["name"]: b for b in branches["branches"]}
    assert by_name["main"]["last_commit"] == head
    assert by_name["main"]["is_default"] is True
    assert by_name["main"]["isDefault"] is True
    assert by_name["feature"]["last_commit"] == feature
    assert by_name["feature"]["is_default"] is False
    assert files["repositoryId"] == rid
    assert sorted(f["path"] for f in files["files"]) == ["README.md", "src/main.py"]
    assert "feature.txt" in {f["path"] for f in feature_files["files"]}
    assert no_branch.status_code == 404
    [spec] = [r for r in repos["items"] if r["remoteUrl"] == str(repo)]
    assert spec["displayName"] == "proj/widget"
    assert spec["scmProvider"] == "git"
    assert spec["lastUsedAt"]
    assert spec["defaultBranch"] == "main"  # learnt from the clone
    assert "proj-widget" in {p["id"] for p in projects}
    assert unknown.status_code == 404
    assert registered.status_code == 201
    assert registered.json()["name"] == "other-repo"
    assert twice.status_code == 200
    assert twice.json()["id"] == registered.json()["id"]
    assert bad.status_code == 400
    assert "url" in bad.json()["errors"]


def test_workspaces_list_and_detail(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        sid = create(c, command_task(["sh", "-c", "echo data > f.txt; echo up; read x"]))
        follow(c, sid, lambda e: e["type"] == "log" and e["message"] == "up")
        active = c.get("/api/v1/workspaces", params={"status": "active", "perPage": 200}).json()
        mine = [w for w in active["items"] if w["sessionId"] == sid]
        detail = c.get(f"/api/v1/workspaces/{mine[0]['id']}").json() if mine else {}
        by_session = c.get(f"/api/v1/workspaces/{sid}").json()
        c.post(f"/api/v1/sessions/{sid}/stop")
        follow(c, sid, is_terminal)
        idle = c.get("/api/v1/workspaces", params={"status": "idle", "perPage": 200}).json()
        unknown = c.get("/api/v1/workspaces/NOPE")
    [ws] = mine
    assert ws["status"] == "active"
    assert ws["executorId"]
    assert os.path.isdir(ws["path"])
    assert ws["storageUsed"] == len("data\n")
    assert ws["createdAt"].endswith("Z")
    assert detail["id"] == ws["id"]
    assert detail["session"]["id"] == sid
    assert by_session["id"] == ws["id"]
    assert sid in {w["sessionId"] for w in idle["items"]}
    assert unknown.status_code == 404


def test_every_route_is_in_the_openapi_document(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        paths = c.get("/api/v1/openapi.json").json()["paths"]
    expected = {
        "/api/v1/sessions/{session_id}/files": ["get"],
        "/api/v1/sessions/{session_id}/files/{path}": ["get"],
        "/api/v1/sessions/{session_id}/files/{path}/content": ["get"],
        "/api/v1/sessions/{session_id}/files/{path}/preview": ["get"],
        "/api/v1/sessions/{session_id}/diff": ["get"],
        "/api/v1/sessions/{session_id}/diff/{path}": ["get"],
        "/api/v1/sessions/{session_id}/workspace/files": ["get"],
        "/api/v1/sessions/{session_id}/workspace/info": ["get"],
        "/api/v1/sessions/{session_id}/workspace/search/files": ["get"],
        "/api/v1/sessions/{session_id}/timeline": ["get"],
        "/api/v1/sessions/{session_id}/fs-snapshots": ["get", "post"],
        "/api/v1/sessions/{session_id}/moments": ["post"],
        "/api/v1/sessions/{session_id}/seek": ["post"],
        "/api/v1/sessions/{session_id}/session-branch": ["post"],
        "/api/v1/sessions/{session_id}/branches": ["get"],
        "/api/v1/agents": ["get"], "/api/v1/schemas/agents/{agent_type}.json": ["get"],
        "/api/v1/runtimes": ["get"], "/api/v1/executors": ["get"],
        "/api/v1/drafts": ["get", "post"], "/api/v1/drafts/{draft_id}": ["get", "put", "patch", "delete"],
        "/api/v1/repositories": ["get", "post"], "/api/v1/repositories/{repo_id}": ["get"],
        "/api/v1/repositories/{repo_id}/branches": ["get"], "/api/v1/repositories/{repo_id}/files": ["get"],
        "/api/v1/repos": ["get"], "/api/v1/projects": ["get"], "/api/v1/workspaces": ["get"],
        "/api/v1/workspaces/{workspace_id}": ["get"],
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(methods) <= set(paths[path]), path


def test_registering_a_local_path_that_does_not_exist_is_a_400(daemon: DaemonProcess, tmp_path: Path) -> None:
    with daemon.client() as c:
        r = c.post("/api/v1/repositories", json={"url": str(tmp_path / "nowhere")})
    assert r.status_code == 400
    assert "url" in r.json()["errors"]


def test_an_impossible_local_path_is_a_400_not_a_500(daemon: DaemonProcess) -> None:
    # Regression (found by schemathesis): a path component over NAME_MAX made is_dir() raise.
    with daemon.client() as c:
        for path, body in (("/api/v1/repositories", {"url": "0" * 3000}),
                           ("/api/v1/tasks", {"prompt": "x", "agent": {"type": "scenario"},
                                              "repo": {"mode": "git", "url": "0" * 3000}})):
            r = c.post(path, json=body)
            assert r.status_code == 400, r.text
