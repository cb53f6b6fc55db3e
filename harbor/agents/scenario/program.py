"""The scenario agent's command line: ``python -u -m harbor.agents.scenario [options]``.

Options:
    --scenario NAME_OR_PATH   a scenario file: NAME, NAME.yaml, NAME.yml or NAME.json in the
                              --scenario-dir directories, then among the shipped scenarios, or a path
    --scenario-json JSON      the scenario itself, inline
    --scenario-dir DIR        where to look for named scenarios (repeatable)
    --speed X                 divide every wait by X (default 1)
    --prompt TEXT             the task's prompt (default: $AH_PROMPT, else the scenario's initialPrompt)

With neither --scenario nor --scenario-json it plays a short built-in demo. It works in its current
directory, prints one JSON event per line on stdout, reads injected prompts from stdin, and exits
with the scenario's exit status; 2 (after a ``log`` line on stdout and a message on stderr) when the
scenario or the options are malformed; 128 + N after signal N (143 for SIGTERM).

Start-up time matters (every session starts it), so this imports the standard library only, and
``yaml`` only when it reads a YAML file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .loader import ScenarioError, builtin_demo, load_scenario, parse_scenario
from .player import Clock, Output, Player

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from .loader import Scenario

EXIT_USAGE = 2


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(message)


def _speed(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harbor.agents.scenario", description="Agent Harbor's scripted agent.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", metavar="NAME_OR_PATH")
    source.add_argument("--scenario-json", metavar="JSON")
    parser.add_argument("--scenario-dir", metavar="DIR", action="append", default=[], type=Path)
    parser.add_argument("--speed", type=_speed, default=1.0, help="a number > 0 (default 1)")
    parser.add_argument("--prompt", default=None)
    return parser


def _load(args: argparse.Namespace) -> Scenario:
    if args.scenario is not None:
        return load_scenario(args.scenario, args.scenario_dir)
    if args.scenario_json is not None:
        try:
            raw = json.loads(args.scenario_json)
        except ValueError as exc:
            raise ScenarioError(f"--scenario-json is not valid JSON: {exc}") from None
        return parse_scenario(raw)
    return builtin_demo(args.prompt if args.prompt is not None else os.environ.get("AH_PROMPT", ""))


def _refuse(out: Output, message: str) -> int:
    try:
        out.emit({"type": "log", "level": "error", "message": message, "tool_execution_id": None})
    except Exception:  # stdout gone: stderr and the exit status still say it
        pass
    print(f"harbor scenario agent: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run the scenario agent; returns its exit status."""
    out, clock = Output(sys.stdout.buffer), Clock()
    out.install_signal_handlers(clock)  # first, so an early SIGTERM already ends cleanly
    try:
        args = _parser().parse_args(argv)
        scenario = _load(args)
    except _Usage as exc:
        return _refuse(out, f"bad arguments: {exc}")
    except ScenarioError as exc:
        return _refuse(out, f"invalid scenario: {exc}")
    player = Player(scenario, speed=args.speed, workspace=Path.cwd().resolve(), out=out, clock=clock)
    player.start_stdin_reader(sys.stdin.buffer)
    return player.run()
