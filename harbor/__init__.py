"""Agent Harbor: the service around the actors (config, store, API, agents, CLI, WebUI, client).

Kept import-free: the scenario agent starts as ``python -m harbor.agents.scenario``.
"""

__version__ = "0.1.0"
