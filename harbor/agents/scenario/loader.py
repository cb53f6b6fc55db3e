"""Finding, reading and checking scenarios (``scenario-format.md``).

A scenario is checked completely before anything is played, into a :class:`Scenario` whose steps
are ``(kind, payload)`` tuples, so a malformed scenario fails at once with a message naming the
place (``timeline[3].agentToolUse.args``) and never half-way through changing a workspace.

This module is imported by the scenario agent at start-up and by the agent catalog to validate a
task's settings. It uses the standard library only; ``yaml`` is imported when a YAML file is read.
Steps it does not know (``assert``, ``screenshot``, ``merge``, ...) are dropped, as the format asks.

Step kinds and payloads:

==============  ==============================================================================
``think``       ``[(ms, text), ...]`` (also from ``llmResponse``)
``assistant``   ``[(ms, text), ...]``
``tool``        ``{"name", "args", "progress": [(ms, text)], "result", "failed", "command", "cwd",
                "timeout_ms"}``; ``command`` is set for ``run_cmd``/``run_command``/``runCmd``
``agent_edits`` ``{"path", "added", "removed", "description"}``
``write``       ``{"tool_name", "path", "content"}``
``edit``        ``{"tool_name", "path", "old", "new", "replace_all"}``
``inputs``      ``[(ms, text), ...]``
``progress``    ``{"progress", "stage"}``
``error``       ``message``
``wait``        ``ms`` (``baseTimeDelta``, or ``advanceMs`` as upstream scenarios spell it)
``complete``    ``None``
``fail``        ``{"exit_code", "message"}``
==============  ==============================================================================
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import posixpath
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time in the agent program, so only checkers see it
    from collections.abc import Callable, Iterable
    from typing import Any

    Step = tuple[str, Any]

#: The scenarios shipped with the package.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "scenarios"
_SUFFIXES = ("", ".yaml", ".yml", ".json")
RUN_TOOLS = frozenset({"run_cmd", "run_command", "runCmd"})
_WRITE_TOOLS = frozenset({"writeFile", "write_file"})
_EDIT_TOOLS = frozenset({"editFile", "edit_file"})


class ScenarioError(ValueError):
    """A scenario that cannot be found, read or played; the message says where and why."""


class Scenario:
    """A checked scenario, ready to play.

    Attributes:
        name: its ``name`` ("" when it has none).
        initial_prompt: its ``initialPrompt`` or None.
        repo: ``{"init", "branch", "dir", "files": [(path, bytes)]}`` or None.
        steps: ``(kind, payload)`` tuples in timeline order (see the module docstring).
        exit_code: ``expect.exitCode`` (default 0).
        base_dir: the directory of the file it came from (for ``repo.dir``), or None.
    """

    __slots__ = ("base_dir", "exit_code", "initial_prompt", "name", "repo", "steps")

    def __init__(self, name: str, initial_prompt: str | None, repo: dict[str, Any] | None,
                 steps: list[Step], exit_code: int, base_dir: Path | None) -> None:
        self.name = name
        self.initial_prompt = initial_prompt
        self.repo = repo
        self.steps = steps
        self.exit_code = exit_code
        self.base_dir = base_dir


# -- finding and reading ---------------------------------------------------------------------------


def shipped_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.y*ml"))


def find_scenario(name: str, dirs: Iterable[Path | str] = (), *, allow_path: bool = True) -> Path:
    """The file of the scenario called ``name``.

    Looks for ``name``, ``name.yaml``, ``name.yml`` and ``name.json`` in each of ``dirs`` in order,
    then among the shipped scenarios, then (when ``allow_path``) takes ``name`` as a path.

    Raises:
        ScenarioError: nothing matches.
    """
    for directory in (*dirs, SHIPPED_DIR):
        for suffix in _SUFFIXES:
            candidate = Path(directory) / (name + suffix)
            if candidate.is_file():
                return candidate
    if allow_path and Path(name).is_file():
        return Path(name)
    known = ", ".join(shipped_names())
    raise ScenarioError(f"no scenario named {name!r} (built-in scenarios: {known})")


def read_scenario_file(path: Path) -> Scenario:
    """Read and check the scenario in ``path`` (YAML, or JSON for ``.json``).

    Raises:
        ScenarioError: it cannot be read, parsed or played.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path} is not UTF-8 text") from None
    if path.suffix == ".json":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ScenarioError(f"{path}: invalid JSON: {exc}") from None
    else:
        import yaml  # here, not at the top: only YAML files pay its ~25 ms of start-up

        try:
            raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise ScenarioError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    return parse_scenario(raw, base_dir=path.parent)


def load_scenario(name_or_path: str, dirs: Iterable[Path | str] = ()) -> Scenario:
    """:func:`find_scenario` then :func:`read_scenario_file`."""
    return read_scenario_file(find_scenario(name_or_path, dirs))


def builtin_demo(prompt: str) -> Scenario:
    """The scenario played when none is given: about 2.5 s at speed 1.

    It reads the prompt, thinks, really runs ``ls -la``, appends to ``HARBOR_DEMO.md`` and completes.
    """
    task = " ".join(prompt.split()) or "(no prompt given)"
    return parse_scenario({"name": "builtin-demo", "timeline": [
        {"progress": {"progress": 5, "stage": "reading the task"}},
        {"think": [[0, f"Reading the task: {task}"], [700, "Let me look at the workspace first."]]},
        {"agentToolUse": {"toolName": "run_cmd", "args": {"cmd": "ls -la"}}},
        {"progress": {"progress": 50, "stage": "editing"}},
        {"think": [[600, "I'll record what I did in HARBOR_DEMO.md."]]},
        {"agentEdits": {"path": "HARBOR_DEMO.md", "linesAdded": 3, "linesRemoved": 0}},
        {"assistant": [[800, "Done: I listed the workspace and added three lines to HARBOR_DEMO.md."]]},
        {"progress": {"progress": 100, "stage": "done"}},
        {"baseTimeDelta": 300},
        {"complete": True},
    ]})


# -- checking ----------------------------------------------------------------------------------------


def parse_scenario(raw: Any, base_dir: Path | None = None) -> Scenario:
    """Check a scenario document (already parsed from YAML/JSON) and normalise it.

    Raises:
        ScenarioError: the document cannot be played; the message names the offending place.
    """
    if not isinstance(raw, dict):
        raise ScenarioError(f"a scenario must be a mapping with a timeline, not {_kind(raw)}")
    timeline = raw.get("timeline", [])
    if not isinstance(timeline, list):
        raise ScenarioError(f"timeline: must be a list of steps, not {_kind(timeline)}")
    steps: list[Step] = []
    if "think" in raw:  # the format allows a bare ``think`` at the top level; it plays first
        steps.extend(_think(raw["think"], "think"))
    for i, step in enumerate(timeline):
        steps.extend(_step(step, f"timeline[{i}]"))
    name = raw.get("name", "")
    prompt = raw.get("initialPrompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ScenarioError(f"initialPrompt: must be text, not {_kind(prompt)}")
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict):
        raise ScenarioError(f"expect: must be a mapping, not {_kind(expect)}")
    exit_code = _exit_code(expect.get("exitCode", 0), "expect.exitCode")
    repo = _repo(raw["repo"]) if raw.get("repo") is not None else None
    return Scenario(str(name or ""), prompt, repo, steps, exit_code, base_dir)


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(
        type(value), type(value).__name__)


def _number(value: Any, where: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value >= 0):
        raise ScenarioError(f"{where}: must be a number of milliseconds >= 0, not {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise ScenarioError(f"{where}: must be text, not {_kind(value)}")


def _exit_code(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ScenarioError(f"{where}: must be an exit status from 0 to 255, not {value!r}")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a mapping, not {_kind(value)}")
    return value


def _rel_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScenarioError(f"{where}: must be a path inside the workspace")
    norm = posixpath.normpath(value.replace("\\", "/"))
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise ScenarioError(f"{where}: {value!r} leaves the workspace; use a relative path")
    return norm


def _timed(value: Any, where: str, text_keys: tuple[str, ...] = ("text", "input", "message", "value")
           ) -> list[tuple[float, str]]:
    """``[[ms, text], ...]``, ``[{relativeTime, text|input|...}, ...]`` or bare texts (at 0 ms)."""
    single_pair = (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (int, float))
                   and isinstance(value[1], str))
    if isinstance(value, (str, dict)) or single_pair:
        value = [value]  # a single item written without its list
    if not isinstance(value, list):
        raise ScenarioError(f"{where}: must be a list of [milliseconds, text] pairs, not {_kind(value)}")
    items = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            items.append((0.0, item))
        elif isinstance(item, list) and len(item) == 2:
            items.append((_number(item[0], at), _text(item[1], at)))
        elif isinstance(item, dict):
            key = next((k for k in text_keys if k in item), None)
            if key is None:
                raise ScenarioError(f"{at}: needs one of {', '.join(text_keys)}")
            ms = item.get("relativeTime", item.get("time", item.get("ms", 0)))
            items.append((_number(ms, f"{at}.relativeTime"), _text(item[key], f"{at}.{key}")))
        else:
            raise ScenarioError(f"{at}: must be a [milliseconds, text] pair, not {_kind(item)}")
    return items


def _think(value: Any, where: str) -> list[Step]:
    return [("think", _timed(value, where))]


def _assistant(value: Any, where: str) -> list[Step]:
    return [("assistant", _timed(value, where))]


def _llm_response(value: Any, where: str) -> list[Step]:
    parts = value if isinstance(value, list) else [value]
    steps: list[Step] = []
    for i, part in enumerate(parts):
        steps.extend(_step(part, f"{where}[{i}]"))
    return steps


def _tool(value: Any, where: str, default_name: str | None = None) -> list[Step]:
    spec = _mapping(value, where)
    name = spec.get("toolName", spec.get("tool_name", default_name))
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}.toolName: is required")
    args = spec.get("args", {}) if default_name is None else spec
    args = _mapping(args if args is not None else {}, f"{where}.args")
    if name in _WRITE_TOOLS:
        return _write(args, f"{where}.args", name)
    if name in _EDIT_TOOLS:
        return _edit(args, f"{where}.args", name)
    result = spec.get("result")
    if result is not None and not isinstance(result, str):
        result = json.dumps(result, ensure_ascii=False)
    command = None
    if name in RUN_TOOLS:
        command = args.get("cmd", args.get("command"))
        if isinstance(command, list):
            import shlex

            command = shlex.join(str(c) for c in command)
        if command is not None and not isinstance(command, str):
            raise ScenarioError(f"{where}.args.cmd: must be a shell command line")
    cwd = args.get("cwd")
    timeout = args.get("timeout")
    return [("tool", {
        "name": name,
        "args": args,
        "progress": _timed(spec.get("progress") or [], f"{where}.progress"),
        "result": result,
        "failed": str(spec.get("status", "ok")).lower() in ("error", "failed", "failure"),
        "command": command or None,
        "cwd": _rel_path(cwd, f"{where}.args.cwd") if cwd not in (None, "") else ".",
        "timeout_ms": _number(timeout, f"{where}.args.timeout") if timeout is not None else None,
    })]


def _run_cmd(value: Any, where: str) -> list[Step]:
    return _tool(value, where, default_name="runCmd")


def _agent_edits(value: Any, where: str) -> list[Step]:
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _agent_edits(v, f"{where}[{i}]")]
    spec = _mapping(value, where)
    counts = []
    for key, alias in (("linesAdded", "lines_added"), ("linesRemoved", "lines_removed")):
        n = spec.get(key, spec.get(alias, 0))
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise ScenarioError(f"{where}.{key}: must be a whole number from 0 to 1000000, not {n!r}")
        counts.append(n)
    description = spec.get("description")
    return [("agent_edits", {"path": _rel_path(spec.get("path"), f"{where}.path"), "added": counts[0],
                             "removed": counts[1], "description": _text(description, f"{where}.description")
                             if description is not None else None})]


def _write(value: Any, where: str, tool_name: str = "writeFile") -> list[Step]:
    spec = _mapping(value, where)
    content = spec.get("content", spec.get("text", spec.get("contents", "")))
    return [("write", {"tool_name": tool_name, "path": _rel_path(spec.get("path"), f"{where}.path"),
                       "content": _text(content if content is not None else "", f"{where}.content")})]


def _edit(value: Any, where: str, tool_name: str = "editFile") -> list[Step]:
    spec = _mapping(value, where)
    old = spec.get("old_string", spec.get("oldString"))
    new = spec.get("new_string", spec.get("newString", ""))
    if not isinstance(old, str) or not old:
        raise ScenarioError(f"{where}.old_string: is required (the exact text to replace)")
    return [("edit", {"tool_name": tool_name, "path": _rel_path(spec.get("path"), f"{where}.path"),
                      "old": old, "new": _text(new, f"{where}.new_string"),
                      "replace_all": bool(spec.get("replace_all", spec.get("replaceAll", False)))})]


def _user_inputs(value: Any, where: str) -> list[Step]:
    if isinstance(value, dict) and "inputs" in value:
        value, where = value["inputs"], f"{where}.inputs"
    return [("inputs", _timed(value, where, ("input", "text", "value", "message")))]


def _progress(value: Any, where: str) -> list[Step]:
    spec = value if isinstance(value, dict) else {"progress": value}
    progress = spec.get("progress")
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not math.isfinite(progress):
        raise ScenarioError(f"{where}.progress: must be a number from 0 to 100, not {progress!r}")
    stage = spec.get("stage", "")
    return [("progress", {"progress": max(0, min(100, progress)),
                          "stage": _text(stage if stage is not None else "", f"{where}.stage")})]


def _error(value: Any, where: str) -> list[Step]:
    message = value.get("message", "error") if isinstance(value, dict) else value
    return [("error", _text(message, where))]


def _complete(value: Any, where: str) -> list[Step]:
    return [("complete", None)] if value not in (False, None) else []


def _fail(value: Any, where: str) -> list[Step]:
    spec = value if isinstance(value, dict) else {}
    message = spec.get("message", value if isinstance(value, str) else "the scenario failed")
    code = spec.get("exitCode", spec.get("exit_code", 1))
    return [("fail", {"exit_code": _exit_code(code, f"{where}.exitCode"), "message": _text(message, where)})]


def _wait(value: Any, where: str) -> list[Step]:
    ms = value.get("ms", value.get("value")) if isinstance(value, dict) else value
    return [("wait", _number(ms, where))]


_STEPS: dict[str, Callable[[Any, str], list[Step]]] = {
    "llmResponse": _llm_response,
    "think": _think,
    "assistant": _assistant,
    "agentToolUse": _tool,
    "runCmd": _run_cmd,
    "agentEdits": _agent_edits,
    "writeFile": _write,
    "editFile": _edit,
    "userInputs": _user_inputs,
    "progress": _progress,
    "error": _error,
    "complete": _complete,
    "fail": _fail,
    "baseTimeDelta": _wait,
    "advanceMs": _wait,
}


def _step(step: Any, where: str) -> list[Step]:
    if isinstance(step, str):
        return [("complete", None)] if step == "complete" else []
    if not isinstance(step, dict):
        raise ScenarioError(f"{where}: a step must be a mapping, not {_kind(step)}")
    kind = step.get("type")
    if isinstance(kind, str) and kind in _STEPS and kind not in step:
        # The older "type-based" spelling: {type: advanceMs, ms: 50}, {type: userInputs, inputs: [...]}
        body = {k: v for k, v in step.items() if k != "type"}
        return _STEPS[kind](body, f"{where}({kind})")
    steps: list[Step] = []
    for key, value in step.items():
        parse = _STEPS.get(key)
        if parse is not None:
            steps.extend(parse(value, f"{where}.{key}"))
    return steps


def _repo(value: Any) -> dict[str, Any]:
    spec = _mapping(value, "repo")
    files = []
    for i, entry in enumerate(spec.get("files") or ()):
        where = f"repo.files[{i}]"
        entry = _mapping(entry, where)
        path = _rel_path(entry.get("path"), f"{where}.path")
        contents = entry.get("contents", entry.get("content", ""))
        if isinstance(contents, dict):
            encoded = contents.get("base64")
            if not isinstance(encoded, str):
                raise ScenarioError(f"{where}.contents: must be text or {{base64: ...}}")
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ScenarioError(f"{where}.contents.base64: is not valid base64") from None
        else:
            data = _text(contents if contents is not None else "", f"{where}.contents").encode("utf-8")
        files.append((path, data))
    branch = spec.get("branch")
    directory = spec.get("dir")
    return {
        "init": bool(spec.get("init", False)),
        "branch": _text(branch, "repo.branch") if branch else None,
        "dir": _text(directory, "repo.dir") if directory else None,
        "files": files,
    }
