"""The scenario agent: a deterministic, scripted coding agent run as a real child process.

``python -u -m harbor.agents.scenario`` (:mod:`.program`) plays a scenario (:mod:`.loader`,
``scenario-format.md``) in its working directory (:mod:`.player`, :mod:`.actions`). Nothing is
imported here: the program's start-up time matters.
"""
