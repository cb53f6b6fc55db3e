"""The :class:`SessionSupervisor`: admits, registers and contains session actors.

- **Admission**: at most ``max_concurrent`` sessions run; the rest wait ``queued`` in strict
  submission order (tickets are taken synchronously when a session is started, because trio does
  not promise any wake-up order among tasks).
- **Registry**: session id → live actor; :meth:`ask` reaches an actor by id.
- **Containment**: an exception escaping one actor fails that session only (``on_crash`` records
  it); its siblings never notice. Sessions are ``temporary`` children in OTP terms: never restarted.
- **Shutdown**: :meth:`stop_all` asks every actor to stop and waits, bounded; cancelling
  :meth:`run` then kills whatever is left (each actor's shielded ``finally`` kills its group).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterator

import trio

from actors.session import Command, SessionActor, Stop

log = logging.getLogger(__name__)


class SessionNotFound(Exception):
    """No live actor has this id (it never existed, or it has ended)."""


class Admission:
    """First-in, first-out admission under a concurrency limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiting: deque[_Ticket] = deque()

    def ticket(self) -> _Ticket:
        """Take a place in the queue now (not a checkpoint); wait for it with ``await ticket.wait()``."""
        ticket = _Ticket(self)
        self._waiting.append(ticket)
        self._admit()
        return ticket

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def _admit(self) -> None:
        while self._waiting and self.running < self.limit:
            ticket = self._waiting.popleft()
            self.running += 1
            ticket.admitted = True
            ticket.event.set()

    def _release(self, ticket: _Ticket) -> None:
        if ticket.admitted:
            self.running -= 1
        else:
            try:
                self._waiting.remove(ticket)
            except ValueError:
                pass
        self._admit()


class _Ticket:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.event = trio.Event()
        self.admitted = False
        self.released = False

    async def wait(self) -> None:
        await self.event.wait()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._release(self)


ActorFactory = Callable[[Callable[[], Awaitable[None]]], SessionActor]


class SessionSupervisor:
    """Runs every session actor. Start with ``await nursery.start(supervisor.run)``.

    Args:
        max_concurrent: sessions allowed to run at once (``max_concurrent_tasks``).
        on_crash: records a session whose actor raised (``(session_id, error)``); must not raise.
    """

    def __init__(self, max_concurrent: int, *,
                 on_crash: Callable[[str, BaseException], Awaitable[None]] | None = None) -> None:
        self.admission = Admission(max_concurrent)
        self._actors: dict[str, SessionActor] = {}
        self._on_crash = on_crash
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the actors' nursery until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def start(self, factory: ActorFactory) -> SessionActor:
        """Create an actor with ``factory(admission_wait)`` and run it. Not a checkpoint.

        The admission ticket is taken here, so sessions are admitted in the order ``start`` is called.

        Raises:
            RuntimeError: the supervisor is not running.
        """
        if self._nursery is None:
            raise RuntimeError("the session supervisor is not running")
        ticket = self.admission.ticket()
        actor = factory(ticket.wait)
        self._actors[actor.id] = actor
        self._nursery.start_soon(self._contain, actor, ticket, name=f"session {actor.id}")
        return actor

    async def _contain(self, actor: SessionActor, ticket: _Ticket) -> None:
        try:
            await actor.run()
        except Exception as exc:
            log.exception("session %s crashed", actor.id)
            if self._on_crash is not None:
                with trio.CancelScope(shield=True):
                    await self._on_crash(actor.id, exc)
        finally:
            ticket.release()
            self._actors.pop(actor.id, None)

    def get(self, session_id: str) -> SessionActor:
        """The live actor of ``session_id``.

        Raises:
            SessionNotFound: no live actor has that id.
        """
        try:
            return self._actors[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def find(self, session_id: str) -> SessionActor | None:
        return self._actors.get(session_id)

    async def ask(self, session_id: str, command: Command, *, timeout: float = 10.0) -> object:
        """Send ``command`` to a session's actor and return its reply (see :meth:`SessionActor.ask`)."""
        return await self.get(session_id).ask(command, timeout=timeout)

    def __iter__(self) -> Iterator[SessionActor]:
        return iter(list(self._actors.values()))

    def __len__(self) -> int:
        return len(self._actors)

    async def stop_all(self, reason: str, *, timeout: float) -> None:
        """Ask every actor to stop and wait for them to end, at most ``timeout`` seconds."""
        actors = list(self._actors.values())

        async def stop_one(actor: SessionActor) -> None:
            try:
                await actor.ask(Stop(reason), timeout=timeout)
            except Exception as exc:  # already ending, or not answering: the cancel below handles it
                log.debug("stop of %s during shutdown: %s", actor.id, exc)
            await actor.ended.wait()

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for actor in actors:
                    nursery.start_soon(stop_one, actor)
