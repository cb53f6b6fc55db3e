"""Session statuses as the client groups them (api-contract.md, "Sessions")."""

from __future__ import annotations

#: Session statuses after which nothing more happens (api-contract.md, "Sessions").
TERMINAL = frozenset({"completed", "failed", "stopped", "cancelled"})

#: Statuses worth watching: the session still does something or may again.
ACTIVE = frozenset({"queued", "provisioning", "running", "pausing", "paused", "resuming", "stopping"})

__all__ = ["ACTIVE", "TERMINAL"]
