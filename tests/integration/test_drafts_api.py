"""Drafts over a real daemon: kept exactly as sent, merged on update, listed, deleted, 404 once gone."""

from __future__ import annotations

from tests.harness import DaemonProcess

DRAFT = {
    "prompt": "Fix the flaky login test",
    "repo": {"mode": "git", "url": "https://example.invalid/org/app.git", "branch": "main"},
    "agents": [{"type": "claude-code", "version": "latest", "count": 2, "settings": {"model": "sonnet"}},
               {"type": "scenario", "count": 1}],
    "runtime": {"type": "devcontainer"},
    "labels": {"team": "web"},
    "customField": {"nested": [1, 2, {"three": None}]},
}


def test_draft_lifecycle(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        created = c.post("/api/v1/drafts", json=DRAFT)
        assert created.status_code == 201, created.text
        draft = created.json()
        did = draft["id"]
        assert created.headers["Location"] == f"/api/v1/drafts/{did}"
        assert {k: draft[k] for k in DRAFT} == DRAFT  # every field as sent, agents kept
        assert draft["createdAt"] == draft["updatedAt"]
        assert draft["createdAt"].endswith("Z")

        assert c.get(f"/api/v1/drafts/{did}").json() == draft
        listed = c.get("/api/v1/drafts").json()
        assert did in [d["id"] for d in listed["items"]]
        assert listed["pagination"]["total"] >= 1

        updated = c.put(f"/api/v1/drafts/{did}", json={"prompt": "Fix it properly", "labels": {"team": "api"},
                                                       "id": "ignored", "createdAt": "ignored"})
        assert updated.status_code == 200
        merged = updated.json()
        assert merged["id"] == did
        assert merged["createdAt"] == draft["createdAt"]
        assert merged["prompt"] == "Fix it properly"
        assert merged["labels"] == {"team": "api"}
        assert merged["agents"] == DRAFT["agents"]
        assert merged["customField"] == DRAFT["customField"]
        assert merged["updatedAt"] >= draft["updatedAt"]
        patched = c.patch(f"/api/v1/drafts/{did}", json={"runtime": None}).json()
        assert patched["runtime"] is None
        assert patched["prompt"] == "Fix it properly"
        assert c.get(f"/api/v1/drafts/{did}").json() == patched

        deleted = c.delete(f"/api/v1/drafts/{did}")
        assert deleted.status_code == 204
        assert deleted.content == b""
        for method in ("GET", "PUT", "DELETE"):
            gone = c.request(method, f"/api/v1/drafts/{did}", json={} if method == "PUT" else None)
            assert gone.status_code == 404, method
            assert gone.headers["content-type"].startswith("application/problem+json")
        assert did not in [d["id"] for d in c.get("/api/v1/drafts").json()["items"]]


def test_draft_bodies(daemon: DaemonProcess) -> None:
    with daemon.client() as c:
        empty = c.post("/api/v1/drafts", content=b"", headers={"Content-Type": "application/json"})
        null = c.post("/api/v1/drafts", content=b"null", headers={"Content-Type": "application/json"})
        not_object = c.post("/api/v1/drafts", json=[1, 2])
        malformed = c.post("/api/v1/drafts", content=b"{oops", headers={"Content-Type": "application/json"})
        newest = c.post("/api/v1/drafts", json={"prompt": "newest"}).json()
        first_page = c.get("/api/v1/drafts", params={"perPage": 1}).json()
    assert empty.status_code == null.status_code == 201
    assert set(empty.json()) == {"id", "createdAt", "updatedAt"}
    assert not_object.status_code == 400
    assert malformed.status_code == 400
    assert first_page["items"][0]["id"] == newest["id"]  # most recently updated first
    assert len(first_page["items"]) == 1
    assert first_page["nextPage"] == 2
