"""Output adapters: an agent's stdout/stderr lines → event drafts (see :mod:`.base`)."""

from .base import OutputAdapter, make_diff_drafts
from .claude import ClaudeStreamJsonAdapter
from .codex import CodexJsonAdapter
from .simple import PlainTextAdapter, ScenarioAdapter

__all__ = [
    "ClaudeStreamJsonAdapter",
    "CodexJsonAdapter",
    "OutputAdapter",
    "PlainTextAdapter",
    "ScenarioAdapter",
    "make_diff_drafts",
]
