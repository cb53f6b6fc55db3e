"""supervisors."""

from supervisors.tree import ChildSpec, Escalation, Restart, Supervisor

__all__ = ["ChildSpec", "Escalation", "Restart", "Supervisor"]
