"""The WebUI in a real browser: create a task from the form, watch it live, pause, resume, read a
diff, stop, both from the daemon's own WebUI (``ah webui``) and through the proxy in front of a
remote daemon (``ah webui --remote-server URL``).

Screenshots of each step land in the test's ``tmp_path``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import expect

from tests.harness import DaemonProcess, read_sse, scenario_task, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SHIPPED = Path(__file__).resolve().parents[2] / "harbor" / "agents" / "scenarios"
PAGE_TIMEOUT_MS = 30_000
PROMPT = "Fix the login bug: users with the right password are rejected"


def login_service_repo(directory: Path) -> Path:
    """A git repository (branch ``main``) holding the buggy login service of ``fix_login_bug``."""
    scenario = yaml.safe_load((SHIPPED / "fix_login_bug.yaml").read_text())
    for entry in scenario["repo"]["files"]:
        path = directory / entry["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(entry["contents"])
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-C", str(directory)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "login service"], check=True)
    return directory


def slow_fix_scenario(directory: Path) -> Path:
    """``fix_login_bug`` working on the task's repository (no seeding of its own), held open at the
    end by a ten-minute thought so a test can pause, resume and stop it without racing its end."""
    scenario = yaml.safe_load((SHIPPED / "fix_login_bug.yaml").read_text())
    scenario["name"] = "slow_login_fix"
    del scenario["repo"]
    timeline = [step for step in scenario["timeline"] if "complete" not in step]
    done = next(i for i, step in enumerate(timeline) if step.get("progress", {}).get("progress") == 100)
    timeline.insert(done, {"think": [[600_000, "Reviewing the change once more before finishing."]]})
    scenario["timeline"] = [*timeline, {"complete": True}]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "slow_login_fix.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    return directory


@pytest.fixture
def scenarios(tmp_path: Path) -> dict[str, str]:
    """Daemon environment that adds the slow scenario to the scenario directories."""
    return {"AH_SCENARIO_DIRS": str(slow_fix_scenario(tmp_path / "scenarios"))}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return login_service_repo(tmp_path / "login-service")


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> Iterator[None]:
    """Wait up to 30 s for a page state here (the machine is shared and slow at times)."""
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)  # Playwright's default, for other modules


@pytest.fixture
def page(context: Any) -> Any:
    """A tab (conftest's ``context``) sized for readable screenshots, whose ``errors`` list collects
    uncaught script errors so a test can assert the pages ran cleanly."""
    tab = context.new_page()
    tab.set_viewport_size({"width": 1280, "height": 900})
    tab.set_default_timeout(PAGE_TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.errors = errors
    return tab


@pytest.fixture
def webui(tmp_path: Path, scenarios: dict[str, str]) -> Iterator[DaemonProcess]:
    """``ah webui``: the daemon with its WebUI, in-process."""
    proc = DaemonProcess(tmp_path / "data", env=scenarios, command="webui").start()
    yield proc
    proc.stop()


def shoot(page: Any, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"), full_page=True)


def badge(page: Any) -> Any:
    return page.locator("#status-slot .badge")


def run_task_flow(page: Any, base_url: str, repo: Path, shots: Path) -> str:
    """Drive one task through the UI; returns its session id."""
    page.goto(base_url + "/")
    expect(page.locator("#agent")).to_have_value("scenario")
    expect(page.locator("#scenario-settings")).to_be_visible()
    shoot(page, shots, "01-feed")

    # Create the task from the form; the page moves to the new session.
    page.fill("#prompt", PROMPT)
    page.fill("#repo", str(repo))
    page.fill("#branch", "main")
    page.fill("#scenario", "slow_login_fix")
    page.fill("#speed", "2")
    page.click("#create-task")
    page.wait_for_url(re.compile(r"/sessions/[0-9A-Z]{26}$"))
    session_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#prompt")).to_have_text(PROMPT)
    expect(page.locator("#agent")).to_contain_text("scenario")
    expect(page.locator("#repo")).to_have_text(f"{repo} @ main")

    # Live activity: thoughts, a real command with its real output, the edits, progress.
    expect(badge(page)).to_have_text("running")
    expect(page.locator("#activity .event-thought").first).to_contain_text("right password are rejected")
    first_run = page.locator("#activity .event-tool").first
    expect(first_run.locator(".tool-name")).to_have_text("run_cmd")
    expect(first_run.locator(".tool-output")).to_contain_text("FAILED")
    expect(page.locator("#activity .event-file", has_text="app/auth.py")).to_be_visible()
    expect(page.locator("#activity .event-file", has_text="CHANGELOG.md")).to_be_visible()
    expect(page.locator("#progress-label")).to_contain_text("80%")
    shoot(page, shots, "02-session-running")

    # Pause and resume: the badge follows the session's real state.
    page.click("#pause")
    expect(badge(page)).to_have_text("paused")
    expect(page.locator("#resume")).to_be_enabled()
    expect(page.locator("#pause")).to_be_disabled()
    shoot(page, shots, "03-paused")

    # The changed files and a diff.
    auth = page.locator('#files li[data-path="app/auth.py"]')
    expect(auth).to_be_visible()
    expect(page.locator('#files li[data-path="CHANGELOG.md"] .file-status')).to_have_text("added")
    expect(auth.locator(".file-status")).to_have_text("modified")
    auth.locator("button.file-open").click()
    expect(page.locator("#diff-path")).to_have_text("app/auth.py")
    expect(page.locator("#diff .line-del")).to_have_text(["-    return stored is not None and stored == password"])
    expect(page.locator("#diff .line-add")).to_have_text(
        ["+    return stored is not None and stored == hash_password(password)"])
    shoot(page, shots, "04-diff")

    page.click("#resume")
    expect(badge(page)).to_have_text("running")
    expect(page.locator("#activity [data-kind=status] [data-status=resuming]")).to_have_count(1)

    page.click("#stop")
    expect(badge(page)).to_have_text("stopped")
    expect(page.locator("#stream-state")).to_have_text("ended")
    expect(page.locator("#stop")).to_be_disabled()
    shoot(page, shots, "05-stopped")

    # The feed shows the session with its final state.
    page.click("a.brand")
    row = page.locator(f'tr[data-session-id="{session_id}"]')
    expect(row.locator(".badge")).to_have_text("stopped")
    expect(row.locator(".session-link")).to_have_text(PROMPT)
    shoot(page, shots, "06-feed-after")
    assert page.errors == []
    return session_id


def test_task_from_form_live_pause_resume_diff_stop(webui: DaemonProcess, page: Any, repo: Path,
                                                    tmp_path: Path) -> None:
    session_id = run_task_flow(page, webui.url, repo, tmp_path)
    with webui.client() as client:
        assert client.get(f"/api/v1/sessions/{session_id}").json()["status"] == "stopped"


def test_feed_shows_sessions_created_elsewhere_live(webui: DaemonProcess, page: Any) -> None:
    page.goto(webui.url + "/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    with webui.client() as client:
        created = client.post("/api/v1/tasks", json=scenario_task("demo", speed=50, prompt="from another client"))
    assert created.status_code == 201
    row = page.locator(f'tr[data-session-id="{created.json()["id"]}"]')
    expect(row.locator(".session-link")).to_have_text("from another client")
    expect(row.locator(".badge")).to_have_text("completed")
    expect(row.locator(".col-changes .added")).to_be_visible()  # final change counts fetched
    assert page.errors == []


def test_timeline_snapshot_seek_and_branch(webui: DaemonProcess, page: Any) -> None:
    with webui.client() as client:
        parent = client.post("/api/v1/tasks", json=scenario_task("fix_login_bug", speed=50)).json()["id"]
        wait_status(client, parent, "completed", timeout=60)
    page.goto(f"{webui.url}/sessions/{parent}")
    expect(page.locator("#stream-state")).to_have_text("ended")
    snapshots = page.locator("#snapshots li")
    expect(snapshots.last.locator(".snapshot-label")).to_have_text("final")
    before = snapshots.count()

    page.click("#take-snapshot")
    expect(snapshots).to_have_count(before + 1)
    expect(snapshots.last.locator(".snapshot-label")).to_have_text("manual")

    # Seek: the snapshot is materialised read-only where the page says.
    snapshots.last.locator("button.seek").click()
    mount = page.locator("#timeline-result .mount-path")
    expect(mount).not_to_be_empty()
    fixed = Path(mount.text_content() or "") / "app" / "auth.py"
    assert "stored == hash_password(password)" in fixed.read_text()

    # Branch: a new session starts from the snapshot, and its page says where it came from.
    snapshots.last.locator("button.branch").click()
    page.fill("#branch-message", "Also reject empty passwords")
    page.click("#branch-submit")
    page.wait_for_url(lambda url: "/sessions/" in url and not url.endswith(parent))
    expect(page.locator("#origin-link")).to_have_text(parent)
    expect(badge(page)).to_have_text("completed")
    branch = page.url.rsplit("/", 1)[1]

    # Delete (after confirming): back on the feed, the branch is gone and its parent is not.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    page.wait_for_url(f"{webui.url}/")
    expect(page.locator(f'tr[data-session-id="{parent}"]')).to_be_visible()
    expect(page.locator(f'tr[data-session-id="{branch}"]')).to_have_count(0)
    assert page.errors == []


def test_signed_out_browser_is_sent_to_sign_in(tmp_path: Path, page: Any) -> None:
    daemon = DaemonProcess(tmp_path / "data", env={"AH_AUTH": "required"}, command="webui").start()
    try:
        page.goto(f"{daemon.url}/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        page.wait_for_url(f"{daemon.url}/login?next=%2Fsessions%2F01ARZ3NDEKTSV4RRFFQ69G5FAV")
        page.goto(f"{daemon.url}/")
        page.wait_for_url(f"{daemon.url}/login?next=%2F")
    finally:
        daemon.stop()


def test_unknown_session_page_says_so(webui: DaemonProcess, page: Any) -> None:
    response = page.goto(webui.url + "/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert response is not None
    assert response.status == 404
    expect(page.locator("h2")).to_have_text("No such session")


def test_remote_server_proxy_serves_the_same_flow(tmp_path: Path, scenarios: dict[str, str], repo: Path,
                                                  page: Any) -> None:
    daemon = DaemonProcess(tmp_path / "remote", env=scenarios).start()
    try:
        proxy = DaemonProcess(tmp_path / "proxy", "--remote-server", daemon.url, command="webui").start()
        try:
            assert proxy.url != daemon.url
            session_id = run_task_flow(page, proxy.url, repo, tmp_path)
            # The feed page still holds a live stream through the proxy: shutdown ends it.
            expect(page.locator("#connection")).to_have_attribute("data-state", "live")
            code, seconds = proxy.stop()
            assert code == 0
            assert seconds < 5
        finally:
            proxy.kill()
        # The session lives on the remote daemon: the proxy only passed requests and streams along.
        with daemon.client() as client:
            assert client.get(f"/api/v1/sessions/{session_id}").json()["status"] == "stopped"
    finally:
        daemon.stop()


def test_proxy_passes_methods_headers_bodies_and_streams(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "remote").start()
    proxy = DaemonProcess(tmp_path / "proxy", "--remote-server", daemon.url + "/api/v1/", command="webui").start()
    try:
        with proxy.client() as client:
            headers = {"Idempotency-Key": "proxy-test"}
            created = client.post("/api/v1/tasks", json=scenario_task("demo", speed=50), headers=headers)
            assert created.status_code == 201
            assert created.headers["Location"] == f"/api/v1/sessions/{created.json()['id']}"
            again = client.post("/api/v1/tasks", json=scenario_task("demo", speed=50), headers=headers)
            assert again.json()["id"] == created.json()["id"]
            session_id = created.json()["id"]
            wait_status(client, session_id, "completed")  # follows the SSE stream through the proxy

            # Resuming a stream: Last-Event-ID reaches the daemon, which sends only what follows.
            with client.stream("GET", f"/api/v1/sessions/{session_id}/events",
                               headers={"Accept": "text/event-stream", "Last-Event-ID": "3"}) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                seqs = [data["seq"] for _, _, data in read_sse(stream) if "seq" in data]
            assert seqs[0] == 4
            assert seqs == list(range(4, 4 + len(seqs)))

            missing = client.get("/api/v1/sessions/01ARZ3NDEKTSV4RRFFQ69G5FAV", headers={"X-Request-ID": "abc"})
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.headers["X-Request-ID"] == "abc"
            assert client.delete(f"/api/v1/sessions/{session_id}").status_code == 204
            assert client.get(f"/api/v1/sessions/{session_id}").status_code == 404
    finally:
        proxy.stop()
        daemon.stop()
    # Once the remote is gone, the proxy says so (and keeps serving the UI).
    proxy = DaemonProcess(tmp_path / "proxy2", "--remote-server", daemon.url, command="webui").start()
    try:
        with proxy.client() as client:
            gone = client.get("/api/v1/sessions")
            assert gone.status_code == 502
            assert daemon.url in gone.json()["detail"]
            assert client.get("/").status_code == 200
    finally:
        proxy.stop()
