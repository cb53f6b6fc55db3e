"""The async client against the real daemon: errors, retries while the daemon comes up, idempotent
creation, and a follower that survives a daemon restart without losing or repeating an event."""

from __future__ import annotations

import signal
import socket
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from harbor.client import DaemonUnreachable, HarborClient, HarborError
from tests.harness import DaemonProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AttemptCounter(httpx.AsyncHTTPTransport):
    """The ordinary transport, noting the requests sent and the connection attempts refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0
        self.first_refusal = trio.Event()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectError:
            self.refused += 1
            self.first_refusal.set()
            raise


async def wait_committed(client: HarborClient, session_id: str, seq: int) -> None:
    """Until the daemon has stored the session's events up to ``seq`` (polled: no event announces it)."""
    with trio.fail_after(20):
        while True:
            if (await client.events(session_id, per_page=1))["items"][0]["seq"] >= seq:
                return
            await trio.sleep(0.05)


async def test_harbor_error_carries_the_problem_fields(daemon: DaemonProcess) -> None:
    async with HarborClient(daemon.url) as client:
        with pytest.raises(HarborError) as missing:
            await client.get_session("01NOSUCHSESSION")
        assert missing.value.status == 404
        assert missing.value.title == "Not Found"
        assert missing.value.type.endswith("/not-found")
        assert "01NOSUCHSESSION" in missing.value.detail
        assert str(missing.value) == missing.value.detail

        with pytest.raises(HarborError) as invalid:
            await client.create_task("hi", agent="no-such-agent")
        assert invalid.value.status == 400
        assert "agents[0].type" in invalid.value.errors
        assert "agents[0].type" in str(invalid.value)  # the readable form names the field


async def test_unreachable_daemon_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with HarborClient(url, retry_for=0.5) as client:
        with trio.fail_after(10), pytest.raises(DaemonUnreachable) as exc:
            await client.list_sessions()
    assert exc.value.status == 0
    assert str(exc.value) == f"cannot reach the daemon at {url}: is it running? (ah agent access-point)"


async def test_client_retries_until_the_daemon_appears(tmp_path: Path) -> None:
    port = free_port()
    transport = AttemptCounter()
    proc = DaemonProcess(tmp_path / "data", "--port", str(port))  # the last --port wins over the harness's 0
    answers: list[dict[str, Any]] = []
    try:
        async with HarborClient(f"http://127.0.0.1:{port}", retry_for=60, transport=transport) as client:

            async def ask() -> None:
                answers.append(await client.version())

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ask)
                    await transport.first_refusal.wait()  # the client is retrying: now bring the daemon up
                    await trio.to_thread.run_sync(proc.start)
        assert proc.url == f"http://127.0.0.1:{port}"
        assert answers
        assert answers[0]["api"] == "v1"
        assert transport.refused >= 1
    finally:
        if proc.proc is not None:
            proc.stop()


async def test_create_task_retries_are_safe_with_an_idempotency_key(daemon: DaemonProcess) -> None:
    async with HarborClient(daemon.url) as client:
        first = await client.create_task("once", settings={"speed": 50}, idempotency_key="cli-test-key-1")
        again = await client.create_task("once", settings={"speed": 50}, idempotency_key="cli-test-key-1")
        assert again["id"] == first["id"]
        listed = await client.list_sessions(per_page=200)
        assert sum(1 for s in listed["items"] if s["id"] == first["id"]) == 1


async def test_follow_yields_every_event_once_and_ends_with_the_outcome(daemon: DaemonProcess) -> None:
    async with HarborClient(daemon.url) as client:
        created = await client.create_task("follow me", settings={"speed": 50})
        with trio.fail_after(60):
            events = [e async for e in client.follow(created["id"])]
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert events[-1]["type"] == "status"
        assert events[-1]["status"] == "completed"
        assert any(e["type"] == "thought" for e in events)
        assert any(e["type"] == "file_edit" for e in events)
        # Following a finished session replays it and ends; resuming from the middle gives the rest.
        with trio.fail_after(30):
            tail = [e["seq"] async for e in client.follow(created["id"], after=seqs[-4])]
        assert tail == seqs[-3:]


@pytest.mark.parametrize(("how", "outcome"), [
    ("SIGTERM", "stopped"),  # graceful shutdown stops the session and records it
    ("SIGKILL", "failed"),  # a crash: the next daemon's recovery marks the session failed
])
async def test_follow_resumes_across_a_daemon_restart_without_duplicates(tmp_path: Path, how: str,
                                                                          outcome: str) -> None:
    port = free_port()
    data = tmp_path / "data"
    first = DaemonProcess(data, "--port", str(port)).start()
    second = DaemonProcess(data, "--port", str(port))
    received: list[dict[str, Any]] = []
    try:
        transport = AttemptCounter()
        async with HarborClient(first.url, retry_for=5, transport=transport) as client:
            created = await client.create_task("a long one", settings={"scenario": "long_running", "speed": 20})
            session_id = created["id"]
            mid_stream = trio.Event()

            async def follow() -> None:
                async with aclosing(client.follow(session_id, reconnect_for=60)) as events:
                    async for event in events:
                        received.append(event)
                        if event["seq"] >= 5:
                            mid_stream.set()

            with trio.fail_after(90):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(follow)
                    await mid_stream.wait()
                    if how == "SIGTERM":
                        code, _ = await trio.to_thread.run_sync(first.stop, signal.SIGTERM)
                        assert code == 0
                    else:
                        # Events reach live readers before they are committed; a crash can lose what
                        # was not committed yet. Crash once what the follower saw is on disk.
                        await wait_committed(client, session_id, 5)
                        await trio.to_thread.run_sync(first.kill)
                    await trio.to_thread.run_sync(second.start)
            assert second.url == first.url  # same port: the follower reconnects to the new daemon

            seqs = [e["seq"] for e in received]
            assert seqs == list(range(1, len(seqs) + 1)), seqs  # no duplicates, no holes
            assert received[-1]["type"] == "status"
            assert received[-1]["status"] == outcome
            # The follower reconnected (to the new daemon) and said where it was.
            resumes = [r.headers.get("Last-Event-ID") for r in transport.sent if r.url.path.endswith("/events")]
            assert len(resumes) >= 2
            assert resumes[0] is None
            assert resumes[-1] is not None
            assert int(resumes[-1]) >= 5
            history = await client.events(session_id, per_page=200, sort="asc")
            assert [e["seq"] for e in history["items"]] == seqs  # exactly what the daemon recorded
            final = await client.get_session(session_id)
            assert final["status"] == received[-1]["status"]
    finally:
        for proc in (first, second):
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()


# -- the retry policy, against scripted answers: the real daemon rarely answers 429 or 503 on cue -----

def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering ``answers`` in turn (the last one repeats), noting each request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers[min(len(seen), len(answers)) - 1]

    return httpx.MockTransport(handle), seen


BUSY = httpx.Response(503, json={"type": "about:blank", "title": "Service Unavailable", "status": 503,
                                 "detail": "the session did not answer in time; try again"})


async def test_429_is_retried_after_the_time_the_daemon_asked_for(autojump_clock: trio.abc.Clock) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "3"}, json={"status": 429}),
                               httpx.Response(200, json={"version": "x", "api": "v1"}))
    async with HarborClient("http://daemon.test", transport=transport, retry_for=30) as client:
        started = trio.current_time()
        assert (await client.version())["api"] == "v1"
        assert trio.current_time() - started >= 3
    assert len(seen) == 2


async def test_post_without_idempotency_key_is_not_repeated(autojump_clock: trio.abc.Clock) -> None:
    transport, seen = scripted(BUSY)
    async with HarborClient("http://daemon.test", transport=transport, retry_for=30) as client:
        with pytest.raises(HarborError) as exc:
            await client.pause("01SESSION")
    assert len(seen) == 1  # a pause that may have happened is not sent twice
    assert exc.value.status == 503
    assert str(exc.value) == "the session did not answer in time; try again"


async def test_create_task_is_retried_with_the_same_idempotency_key(autojump_clock: trio.abc.Clock) -> None:
    created = {"id": "01A", "session_ids": ["01A"], "status": "queued", "links": {}}
    transport, seen = scripted(BUSY, BUSY, httpx.Response(201, json=created))
    async with HarborClient("http://daemon.test", transport=transport, retry_for=30) as client:
        assert (await client.create_task("hi"))["id"] == "01A"
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 3
    assert len(keys) == 1  # one key for every attempt: the daemon creates the work once
