"""A cheap view of the host's processes: one pass over ``/proc/<pid>/stat``, shared by its callers.

Finding an agent's members (descendants, its process group, processes carrying its marker) needs
every process on the host: the kernel has no index by parent or group (and ``/proc/<pid>/task/*/
children`` is not always built in). psutil answers each question with its own pass, reading several
files per process (``status``, ``environ``...). With a thousand sessions and a stats sampler, a pause
or a stop, each asking for every session, that is quadratic and it ate most of a core.

Here one pass reads the one-line ``stat`` file of each process (parent, group, state, CPU ticks,
start time, RSS): a :class:`ProcTable`. A process's marker (``AH_SESSION_ID`` in its environment) is
read once in its lifetime and remembered by ``(pid, start time)``. Concurrent callers share passes:
:func:`snapshot` gives a table whose pass *started* after the caller asked (or within ``max_age``
seconds before), so a burst of a thousand stops costs a handful of passes, and never a stale table.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

MARKER_ENV = b"AH_SESSION_ID="
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_GONE_STATES = frozenset("ZXx")


@dataclass(frozen=True, slots=True)
class Proc:
    """One process, as its ``stat`` line described it."""

    pid: int
    ppid: int
    pgrp: int
    state: str  # R, S, D, T, t, Z, X...
    start: int  # start time in clock ticks since boot: with pid, the process's identity
    cpu: float  # user + system seconds
    rss: int  # bytes

    @property
    def gone(self) -> bool:
        """A zombie or a dying process: it runs nothing any more."""
        return self.state in _GONE_STATES


def read_stat(pid: int) -> Proc | None:
    """The process ``pid`` now, or ``None`` if it does not exist. Blocking (one small read)."""
    line = _read(f"/proc/{pid}/stat")
    return None if line is None else _parse(pid, line)


def _read(path: str, size: int = 4096) -> bytes | None:
    # os.open/os.read: half the cost of open() (no buffered file object), which a pass repeats
    # for every process on the host.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse(pid: int, line: bytes) -> Proc | None:
    # "pid (comm) state ppid pgrp ..." — comm may hold spaces and parentheses: cut at the last ')'.
    rest = line[line.rfind(b")") + 2:].split()
    try:
        return Proc(pid=pid, ppid=int(rest[1]), pgrp=int(rest[2]), state=rest[0].decode(),
                    start=int(rest[19]), cpu=(int(rest[11]) + int(rest[12])) / _CLK_TCK,
                    rss=int(rest[21]) * _PAGE)
    except (IndexError, ValueError):
        return None


@dataclass
class ProcTable:
    """Every process at one moment (a pass takes milliseconds; processes may come and go during it)."""

    procs: dict[int, Proc]
    started_at: float  # time.monotonic() when the pass began
    _children: dict[int, list[int]] = field(default_factory=dict, repr=False)
    _markers: dict[tuple[int, int], bytes | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        children: dict[int, list[int]] = defaultdict(list)
        for proc in self.procs.values():
            children[proc.ppid].append(proc.pid)
        self._children = dict(children)

    def get(self, pid: int, start: int | None = None) -> Proc | None:
        """The process ``pid`` (if ``start`` is given, only if it is the same process)."""
        proc = self.procs.get(pid)
        return proc if proc is not None and (start is None or proc.start == start) else None

    def tree(self, pid: int, start: int | None = None) -> list[Proc]:
        """``pid`` and its descendants, parents first; live ones only (no zombies)."""
        root = self.get(pid, start)
        if root is None:
            return []
        out, todo = [], [root]
        while todo:
            proc = todo.pop()
            if not proc.gone:
                out.append(proc)
            todo.extend(self.procs[c] for c in self._children.get(proc.pid, ()) if c in self.procs)
        return out

    def group(self, pgid: int) -> list[Proc]:
        """Live members of process group ``pgid``."""
        return [p for p in self.procs.values() if p.pgrp == pgid and not p.gone]

    def marked(self, marker: str) -> list[Proc]:
        """Live processes of this user whose environment carries ``AH_SESSION_ID=<marker>``."""
        wanted = marker.encode()
        uid, me = os.getuid(), os.getpid()
        return [p for p in self.procs.values()
                if not p.gone and p.pid != me and self._markers.get((p.pid, p.start)) == wanted
                and _owner(p.pid) == uid]


class _Scanner:
    """Shared passes over /proc: at most one at a time; callers that asked during a pass get the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: ProcTable | None = None
        self._markers: dict[tuple[int, int], bytes | None] = {}

    def snapshot(self, max_age: float) -> ProcTable:
        asked = time.monotonic()
        with self._lock:
            table = self._table
            if table is not None and table.started_at >= asked - max_age:
                return table
            table = self._pass()
            self._table = table
            return table

    def _pass(self) -> ProcTable:
        started = time.monotonic()
        procs: dict[int, Proc] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            line = _read(f"/proc/{name}/stat")
            if line is None:
                continue
            proc = _parse(pid, line)
            if proc is not None:
                procs[pid] = proc
        # Markers: read once per process lifetime; forget the ones of processes that are gone.
        known = self._markers
        markers = {key: known[key] for key in ((p.pid, p.start) for p in procs.values()) if key in known}
        for proc in procs.values():
            key = (proc.pid, proc.start)
            if key not in markers:
                markers[key] = _read_marker(proc.pid)
        self._markers = markers
        return ProcTable(procs, started, _markers=markers)


def _read_marker(pid: int) -> bytes | None:
    env = _read(f"/proc/{pid}/environ", 1 << 20)
    if env is None:  # another user's process, or gone
        return None
    at = env.find(MARKER_ENV)
    while at > 0 and env[at - 1] != 0:  # a match inside another variable's value: look further
        at = env.find(MARKER_ENV, at + 1)
    if at < 0:
        return None
    end = env.find(b"\0", at)
    return env[at + len(MARKER_ENV):end if end >= 0 else len(env)]


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


_SCANNER = _Scanner()


def snapshot(max_age: float = 0.0) -> ProcTable:
    """A table of every process whose pass began at most ``max_age`` seconds before this call.

    ``max_age=0`` (the default) guarantees a pass that began after the call: anything that existed
    when it was made is in the table unless it has ended since. Blocking (milliseconds: one read per
    process, plus one ``environ`` read per process never seen before); thread-safe.
    """
    return _SCANNER.snapshot(max_age)
