"""Declaring endpoints once: validation, role and the OpenAPI document come from one declaration.

Handlers are declared with :func:`endpoint` on their resource's blueprint::

    @endpoint(bp, "POST", "/tasks", body=CreateTaskRequest, status=201, responses={201: TaskCreated},
              role="operator", summary="Create a task")
    async def create_task(body: CreateTaskRequest) -> ...

The wrapper parses and validates the JSON body (an empty body and the literal ``null`` both mean
"no body"), the query string (``query=`` model, passed as ``query``), and asks the app's authorizer
whether the caller holds ``role``. Every declaration lands in :data:`ENDPOINTS`, from which
:func:`openapi_document` builds the OpenAPI 3.1 document, so the document lists exactly what is served.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from quart import Blueprint, current_app, request

from harbor.api.problems import Problem, invalid

Role = Literal["public", "viewer", "operator", "admin"]
Handler = Callable[..., Awaitable[Any]]

_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
#: Deepest nesting of arrays and objects accepted in a request body (no real request comes close).
MAX_JSON_DEPTH = 64
_NAMED_MESSAGE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.S)


@dataclass(frozen=True)
class Endpoint:
    """One declared route: what the OpenAPI document and the authorizer know of it."""

    method: str
    rule: str  # the full Quart rule, e.g. /api/v1/sessions/<session_id>
    name: str
    summary: str
    tags: tuple[str, ...]
    role: Role
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    status: int = 200
    responses: dict[int, Any] = field(default_factory=dict)
    stream: bool = False

    @property
    def path(self) -> str:
        """The OpenAPI path (``{session_id}`` for ``<session_id>``)."""
        return _PATH_PARAM.sub(lambda m: "{" + m.group(2) + "}", self.rule)

    @property
    def path_params(self) -> list[str]:
        return [m.group(2) for m in _PATH_PARAM.finditer(self.rule)]


ENDPOINTS: list[Endpoint] = []


def field_path(loc: tuple[Any, ...]) -> str:
    """``("agents", 0, "type")`` → ``agents[0].type`` (the contract's spelling of a field)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
        # other parts are pydantic's names for union members and validators: not fields
    return out or "body"


def validation_errors(exc: ValidationError, prefix: str = "") -> dict[str, list[str]]:
    """A pydantic error as the contract's ``errors`` map."""
    errors: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        name = field_path(err["loc"])
        name = f"{prefix}.{name}" if prefix and name != "body" else (prefix or name)
        message = "is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        # Model-level validators name the sub-field they judge as "field: message".
        named = _NAMED_MESSAGE.match(message)
        if named:
            sub, message = named.groups()
            name = sub if name == "body" else f"{name}.{sub}"
        errors.setdefault(name, [])
        if message not in errors[name]:
            errors[name].append(message)
    return errors


async def read_json_body() -> Any:
    """The request's JSON body, or ``None`` for an empty body or the literal ``null``.

    Raises:
        Problem: 400 when the body is not JSON, or nests deeper than :data:`MAX_JSON_DEPTH`.
    """
    raw = await request.get_data(cache=True)
    text = raw.strip() if isinstance(raw, bytes) else raw.encode().strip()
    if not text or text == b"null":
        return None
    too_deep = False
    try:
        data = json.loads(text)
    except RecursionError:
        data, too_deep = None, True  # nested past the interpreter's limit: certainly past ours
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"The request body is not valid JSON: {exc}", kind="malformed-json") from exc
    if too_deep or nests_deeper_than(data, MAX_JSON_DEPTH):
        raise Problem(400, f"The request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
                      kind="malformed-json")
    return data


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests containers more than ``limit`` levels (``{}`` is one level).

    Iterative, so a hostile document cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


async def _parse_body(model: type[BaseModel], required: bool) -> BaseModel:
    data = await read_json_body()
    if data is None:
        if required:
            raise invalid({"body": ["is required"]}, "A JSON body is required")
        data = {}
    if not isinstance(data, dict):
        raise invalid({"body": ["must be a JSON object"]})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_errors(exc)) from None


def _parse_query(model: type[BaseModel]) -> BaseModel:
    raw: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise invalid(validation_errors(exc), "The query string is not valid") from None


def endpoint(bp: Blueprint, method: str, rule: str, *, summary: str, role: Role = "viewer",
             body: type[BaseModel] | None = None, body_required: bool = True,
             query: type[BaseModel] | None = None, status: int = 200,
             responses: dict[int, Any] | None = None, stream: bool = False,
             tags: tuple[str, ...] | None = None) -> Callable[[Handler], Handler]:
    """Declare a route on ``bp`` (see the module docstring). ``rule`` is relative to the blueprint."""

    def decorate(func: Handler) -> Handler:
        full_rule = (bp.url_prefix or "") + rule
        ep = Endpoint(method=method, rule=full_rule, name=f"{bp.name}.{func.__name__}", summary=summary,
                      tags=tags or (bp.name,), role=role, body=body, body_required=body_required,
                      query=query, status=status, responses=dict(responses or {}), stream=stream)
        ENDPOINTS.append(ep)

        @wraps(func)
        async def handler(**path_params: Any) -> Any:
            authorize = current_app.extensions.get("authorize")
            if authorize is not None:
                await authorize(ep)
            kwargs = dict(path_params)
            if query is not None:
                kwargs["query"] = _parse_query(query)
            if body is not None:
                kwargs["body"] = await _parse_body(body, body_required)
            return await func(**kwargs)

        bp.add_url_rule(rule, func.__name__, handler, methods=[method])
        return handler

    return decorate


# -- the OpenAPI document ---------------------------------------------------------------------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "requestId": {"type": "string"},
    },
}

_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _query_parameters(model: type[BaseModel], schema: dict[str, Any]) -> list[dict[str, Any]]:
    params = []
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, prop in props.items():
        params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
    return params


def openapi_document(*, title: str, version: str, endpoints: list[Endpoint] | None = None,
                     served_rules: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Build the OpenAPI 3.1 document from the declared endpoints.

    Args:
        served_rules: ``(method, rule)`` pairs the app really serves; endpoints declared on a
            blueprint that was not registered are left out.
    """
    eps = [e for e in (endpoints if endpoints is not None else ENDPOINTS)
           if served_rules is None or (e.method, e.rule) in served_rules]
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = []
    for e in eps:
        if e.body is not None:
            models.append((e.body, "validation"))
        models.extend((m, "serialization") for m in e.responses.values()
                      if isinstance(m, type) and issubclass(m, BaseModel))
    unique = list(dict.fromkeys(models))
    refs, defs = models_json_schema(unique, ref_template="#/components/schemas/{model}") if unique else ({}, {})
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA, **defs.get("$defs", {})}

    paths: dict[str, dict[str, Any]] = {}
    problem = {"description": "Problem", "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}
    for e in eps:
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in e.path_params
        ]
        if e.query is not None:
            params += _query_parameters(e.query, e.query.model_json_schema(by_alias=True))
        responses: dict[str, Any] = {}
        declared = e.responses or {e.status: None}
        for code, model in declared.items():
            if code == 204:
                responses["204"] = {"description": "No content"}
                continue
            if isinstance(model, dict) and "content" in model:
                responses[str(code)] = {"description": "OK", **model}
                continue
            if e.stream:
                content = {"text/event-stream": {"schema": {"type": "string"}}}
            elif isinstance(model, type) and issubclass(model, BaseModel):
                content = {"application/json": {"schema": refs[(model, "serialization")]}}
            else:
                content = {"application/json": {"schema": model if isinstance(model, dict) else _ANY_OBJECT}}
            responses[str(code)] = {"description": "OK" if code < 300 else "Response", "content": content}
        responses["default"] = problem
        op: dict[str, Any] = {"operationId": e.name.replace(".", "_"), "summary": e.summary,
                              "tags": list(e.tags), "responses": responses}
        if params:
            op["parameters"] = params
        if e.body is not None:
            op["requestBody"] = {"required": e.body_required, "content": {"application/json": {
                "schema": refs[(e.body, "validation")]}}}
        if e.role != "public":
            op["x-required-role"] = e.role
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {"openapi": "3.1.0", "info": {"title": title, "version": version}, "paths": paths,
            "components": {"schemas": schemas}}
