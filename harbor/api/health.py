"""Liveness, readiness and version."""

from __future__ import annotations

import platform
import time
from typing import Any

from pydantic import BaseModel
from quart import Blueprint, Response, current_app, jsonify

from harbor import __version__
from harbor.api.routing import endpoint

bp = Blueprint("health", __name__, url_prefix="/api/v1")


class Health(BaseModel):
    status: str
    uptimeSeconds: float


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


class Version(BaseModel):
    version: str
    api: str
    python: str


@endpoint(bp, "GET", "/healthz", summary="Liveness: the daemon's loop answers", role="public",
          responses={200: Health})
async def healthz() -> Any:
    harbor = current_app.extensions["harbor"]
    return {"status": "ok", "uptimeSeconds": round(time.time() - harbor.started_at, 3)}


@endpoint(bp, "GET", "/readyz", summary="Readiness: the database answers", role="public",
          responses={200: Readiness, 503: Readiness})
async def readyz() -> Any:
    harbor = current_app.extensions["harbor"]
    checks = await harbor.readiness()
    ok = all(v == "ok" for v in checks.values())
    response: Response = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    response.status_code = 200 if ok else 503
    return response


@endpoint(bp, "GET", "/version", summary="The daemon's version", role="public", responses={200: Version})
async def version() -> Any:
    return {"version": __version__, "api": "v1", "python": platform.python_version()}
