"""What a :class:`~actors.session.SessionActor` is told and given: its commands, its ports and its plan.

Kept apart from the actor so that callers (the session service, the supervisor, tests) name what they
send and provide without reading the actor's machinery; :mod:`actors.session` re-exports all of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from actors.events import Draft
from actors.lifecycle import Status

# -- commands --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pause:
    """SIGSTOP the group; reply once every member is stopped."""


@dataclass(frozen=True)
class Resume:
    """SIGCONT the group."""


@dataclass(frozen=True)
class Stop:
    """Graceful stop (TERM, CONT, KILL after the grace period); replies at once, ends ``stopped``."""

    reason: str | None = None


@dataclass(frozen=True)
class Kill:
    """Delete: SIGKILL at once; replies once the actor has ended (``cancelled``)."""

    reason: str | None = None


@dataclass(frozen=True)
class Prompt:
    """Write a prompt to the agent's input (encoded by :attr:`SessionPlan.encode_prompt`), then log it
    as the user's line."""

    text: str


Command = Pause | Resume | Stop | Kill | Prompt


class InputUnavailable(Exception):
    """The agent does not read prompts now (its stdin is closed: it never reads one, or its turn ended)."""


class SessionFinished(Exception):
    """The session has ended; it takes no more commands (the API answers 409, or 410 for prompts)."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"the session has ended ({status})")
        self.status = status


# -- ports -----------------------------------------------------------------------------------

class SessionRecorder(Protocol):
    """Where the actor records its session's durable fields (the daemon's journal)."""

    async def update_session(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Write ``fields`` (status, timestamps, pid, exit code, error, …) of the session."""


class OutputAdapter(Protocol):
    """Turns the agent's output lines into event drafts (``harbor.agents`` provides them)."""

    def stdout_line(self, line: bytes) -> list[Draft]: ...
    def stderr_line(self, line: bytes) -> list[Draft]: ...
    def finish(self) -> list[Draft]: ...

    @property
    def idle(self) -> bool:
        """The agent finished its work and only waits on stdin (then the actor closes stdin)."""
        ...


@dataclass(frozen=True)
class Launch:
    """How to start the agent: its argv, extra environment, and what happens on its stdin.

    Attributes:
        stdin_data: written to stdin right after the start (e.g. Claude Code's first message).
        keep_stdin_open: ``False`` closes stdin at once (agents that read it to the end first).
    """

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin_data: bytes = b""
    keep_stdin_open: bool = True


@dataclass(frozen=True)
class ProvisionedWorkspace:
    """A workspace ready for the agent.

    Attributes:
        path: where the agent runs.
        fields: recorded on the session (base commit...).
        after_start: bookkeeping awaited once the agent runs rather than before (it need not delay the
            start); an error in it is logged, it does not fail the session.
    """

    path: Path
    fields: Mapping[str, Any] = field(default_factory=dict)
    after_start: Callable[[], Awaitable[None]] | None = None


@dataclass
class SessionPlan:
    """Everything the actor needs, decided by the service before the session starts.

    Attributes:
        provision: prepares the workspace (may raise: the session fails with the message).
        command: builds the agent's :class:`Launch`, given the workspace.
        adapter: parses the agent's output.
        timeout: seconds of running time allowed (paused time does not count); ``None`` = none.
        stop_grace: seconds between SIGTERM and SIGKILL on stop.
        on_boundary: called (not awaited) after a ``tool_result``/``file_edit`` event: the snapshot trigger.
        on_pause/on_resume: called when the group stops/continues (the snapshot schedule pauses too).
        encode_prompt: how a prompt is written to the agent's stdin (default: the text and a newline).
    """

    provision: Callable[[], Awaitable[ProvisionedWorkspace]]
    command: Callable[[Path], Launch]
    adapter: OutputAdapter
    timeout: float | None = None
    stop_grace: float = 5.0
    on_boundary: Callable[[str], None] | None = None
    on_pause: Callable[[], None] | None = None
    on_resume: Callable[[], None] | None = None
    base_env: Mapping[str, str] | None = None
    encode_prompt: Callable[[str], bytes] = lambda text: text.encode() + b"\n"
