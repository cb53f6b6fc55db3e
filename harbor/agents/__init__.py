"""Agents: the catalog of agent types, their output adapters, and the scenario agent program.

The public names below are imported on first use (PEP 562): ``python -m harbor.agents.scenario``
imports this package on every session start, and must not pay for the catalog and adapters.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .adapters import (
        ClaudeStreamJsonAdapter,
        CodexJsonAdapter,
        OutputAdapter,
        PlainTextAdapter,
        ScenarioAdapter,
        make_diff_drafts,
    )
    from .catalog import (
        AgentCatalog,
        AgentContext,
        AgentSpec,
        AgentUnavailable,
        InvalidAgentSettings,
        LaunchPlan,
        UnknownAgent,
    )

_HOME = {
    "AgentCatalog": "catalog",
    "AgentContext": "catalog",
    "AgentSpec": "catalog",
    "AgentUnavailable": "catalog",
    "InvalidAgentSettings": "catalog",
    "LaunchPlan": "catalog",
    "UnknownAgent": "catalog",
    "ClaudeStreamJsonAdapter": "adapters",
    "CodexJsonAdapter": "adapters",
    "OutputAdapter": "adapters",
    "PlainTextAdapter": "adapters",
    "ScenarioAdapter": "adapters",
    "make_diff_drafts": "adapters",
}

__all__ = [
    "AgentCatalog",
    "AgentContext",
    "AgentSpec",
    "AgentUnavailable",
    "ClaudeStreamJsonAdapter",
    "CodexJsonAdapter",
    "InvalidAgentSettings",
    "LaunchPlan",
    "OutputAdapter",
    "PlainTextAdapter",
    "ScenarioAdapter",
    "UnknownAgent",
    "make_diff_drafts",
]


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
