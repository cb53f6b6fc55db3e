"""Path traversal over real HTTP: every file route refuses paths that leave the workspace — ``..``,
URL-encoded and double-encoded variants, absolute paths, and symlinks the agent planted (to ``/``,
to a directory outside, to a secret file) — and no byte from outside ever comes back."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

import pytest

from tests.harness import DaemonProcess, command_task
from tests.integration.workspace_helpers import create, follow, is_terminal

MARKER = "TOP-SECRET-9f2c4e"


@pytest.fixture(scope="module")
def planted(daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A finished session whose agent wrote a file and planted symlinks leading out of the workspace."""
    outside = tmp_path_factory.mktemp("outside")
    secret = outside / "secret.txt"
    secret.write_text(f"{MARKER}\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.txt").write_text(f"{MARKER} inner\n")
    script = (f"echo hello > a.txt && mkdir -p sub && echo inside > sub/b.txt && ln -s / root && "
              f"ln -s {outside}/dir outdir && ln -s {secret} secret && ln -s ../../../../../../.. up && "
              f"ln -s sub/b.txt ok-link && echo planted")
    with daemon.client() as c:
        sid = create(c, command_task(["sh", "-c", script]))
        events = follow(c, sid, is_terminal)
    assert events[-1]["status"] == "completed", events[-1]
    return {"sid": sid, "secret": secret}


# Raw request targets (what goes on the wire after /files/ or /diff/): each must be refused.
ATTACKS = [
    "../../etc/passwd",
    "sub/../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "..%252f..%252fetc%252fpasswd",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "root/etc/passwd",
    "root",
    "up/etc/passwd",
    "outdir/inner.txt",
    "outdir",
    "secret",
    "a.txt%00/../../etc/passwd",
    "..",
    "%2e%2e",
]
ROUTES = ["files/{p}", "files/{p}/content", "files/{p}/preview", "diff/{p}"]


def _raw_get(url: str, target: str) -> tuple[int, str]:
    """GET with the request target exactly as given (httpx would normalise ``..`` away)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _leaks(body: str) -> bool:
    return MARKER in body or "root:x:0:0" in body or "/bin/bash" in body


@pytest.mark.parametrize("route", ROUTES)
def test_traversal_is_refused_on_path_routes(daemon: DaemonProcess, planted: dict, route: str) -> None:
    base = f"/api/v1/sessions/{planted['sid']}/"
    for attack in ATTACKS:
        status, body = _raw_get(daemon.url, base + route.format(p=attack))
        assert status in (400, 404), (route, attack, status, body[:300])
        assert not _leaks(body), (route, attack)
    # The same routes work for a path that stays inside, through a symlink that stays inside too.
    assert _raw_get(daemon.url, base + route.format(p="a.txt"))[0] == 200
    assert _raw_get(daemon.url, base + route.format(p="ok-link"))[0] in (200, 400)


def test_traversal_is_refused_in_query_paths(daemon: DaemonProcess, planted: dict) -> None:
    base = f"/api/v1/sessions/{planted['sid']}"
    values = ["../../etc/passwd", "/etc", "/", "root", "root/etc", "up", "outdir", "secret", "sub/../..",
              "%2e%2e%2f%2e%2e%2fetc", "..", "a\x00b"]
    with daemon.client() as c:
        for value in values:
            for url in (f"{base}/workspace/files", f"{base}/diff"):
                params = {"path": value, "recursive": "true"} if url.endswith("files") else {"files": value}
                r = c.get(url, params=params)
                assert r.status_code in (400, 404), (url, value, r.status_code, r.text[:300])
                assert not _leaks(r.text), (url, value)
        # Double-encoded: decoded once it is a literal (missing) name, never a way out.
        raw = f"{base}/workspace/files?path={quote('%2e%2e%2f%2e%2e%2fetc', safe='')}"
        status, body = _raw_get(daemon.url, raw)
        assert status == 404
        assert not _leaks(body)
        assert c.get(f"{base}/workspace/files", params={"path": "sub"}).status_code == 200


def test_listings_show_planted_symlinks_without_following_them(daemon: DaemonProcess, planted: dict) -> None:
    base = f"/api/v1/sessions/{planted['sid']}"
    with daemon.client() as c:
        tree = c.get(f"{base}/workspace/files", params={"recursive": "true"}).json()
        found = c.get(f"{base}/workspace/search/files", params={"q": "passwd"}).json()
        inner = c.get(f"{base}/workspace/search/files", params={"q": "inner"}).json()
        files = c.get(f"{base}/files").json()
        diffs = c.get(f"{base}/diff").json()
    nodes = {n["path"]: n for n in tree["children"]}
    for link in ("root", "outdir", "secret", "up"):
        assert nodes[link].get("symlink") is True
        assert nodes[link]["children"] is None
    assert found["items"] == []
    assert inner["items"] == []
    # The changed-file list names the links (git records them as links) but reads nothing through them.
    assert {"root", "outdir", "secret", "up"} <= {i["path"] for i in files["items"]}
    for doc in (tree, found, files, diffs):
        assert not _leaks(str(doc))
    # Diffs of links show the link's target text, as git does, never the target's content.
    assert str(planted["secret"]) in next(f["diff"] for f in diffs["files"] if f["path"] == "secret")
