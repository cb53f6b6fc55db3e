"""The daemon's configuration: one :class:`Settings` object, layered.

Precedence, lowest first: built-in defaults < TOML file (``--config``, else
``<user config dir>/config.toml``) < ``AH_*`` environment variables < command-line flags.
Every field of :class:`Settings` can be set in each layer under the same name (environment:
upper-cased with the ``AH_`` prefix, e.g. ``AH_MAX_CONCURRENT_TASKS=4``; lists and tables as JSON).
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

APP_NAME = "agent-harbor"
ENV_PREFIX = "AH_"


class ConfigError(Exception):
    """The configuration cannot be used; the message says which setting and why."""


class Settings(BaseModel):
    """Everything the daemon and the ``ah`` commands can be told.

    Paths left unset are derived from ``data_dir`` (see the ``*_path`` properties).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Network
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS; '*' for any")
    max_body_bytes: int = Field(1 << 20, gt=0, description="Largest request body accepted")
    max_prompt_bytes: int = Field(16 << 10, gt=0, description="Largest body of POST /sessions/{id}/prompt")
    sse_keepalive_seconds: float = Field(15.0, gt=0, le=15.0)
    insecure_no_auth: bool = False

    # Security (docs/security.md)
    auth: Literal["off", "required"] = Field("off", description="'required': every API call needs a credential")
    jwt_secret: SecretStr | None = Field(None, description="HS256 secret for bearer tokens (32+ bytes)")
    jwt_public_key_file: Path | None = Field(None, description="PEM public key for RS256/ES256 bearer tokens")
    jwt_jwks_file: Path | None = Field(None, description="JSON Web Key Set file for bearer tokens")
    jwt_issuer: str | None = Field(None, description="Required 'iss' of bearer tokens")
    jwt_audience: str | None = Field(None, description="Required 'aud' of bearer tokens")
    session_cookie_ttl_seconds: float = Field(12 * 3600.0, gt=0, description="WebUI sign-in lifetime")
    rate_limit_per_second: float = Field(20.0, ge=0, description="Requests per second per principal; 0 = off")
    rate_limit_burst: int = Field(40, ge=1, description="Requests a principal may send at once")
    rate_limit_unauthenticated: bool = Field(
        False, description="With auth off, also limit requests and streams per client address")
    max_streams_per_principal: int = Field(32, ge=0, description="Open event streams per principal; 0 = any")

    # Storage
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    db: str | None = Field(None, description="Database URL; default sqlite:///<data_dir>/harbor.db")

    # Sessions
    max_concurrent_tasks: int = Field(8, ge=1)
    stop_grace_seconds: float = Field(5.0, ge=0)
    session_timeout_seconds: float = Field(0.0, ge=0, description="0 = no timeout")
    allow_command_agent: bool = False
    scenario_dirs: list[Path] = Field(default_factory=list)
    agent_binaries: dict[str, str] = Field(default_factory=dict)

    # Snapshots
    max_concurrent_snapshots: int = Field(2, ge=1)
    snapshot_interval_seconds: float = Field(60.0, ge=0, description="0 = no interval snapshots")
    snapshot_provider: Literal["auto", "git", "copy", "btrfs", "zfs"] = "auto"

    # Logging
    log_format: Literal["auto", "human", "json"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Clients (``ah status``, ``ah session ...``)
    remote_server: str | None = None

    @field_validator("bind")
    @classmethod
    def _bind_is_an_address(cls, value: str) -> str:
        if value in ("localhost", ""):
            return "127.0.0.1"
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IP address") from exc
        return value

    @property
    def database_url(self) -> str:
        """The database URL in force."""
        return self.db or f"sqlite:///{self.data_dir / 'harbor.db'}"

    @property
    def workspaces_path(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def snapshots_path(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def repo_cache_path(self) -> Path:
        return self.data_dir / "repos"

    @property
    def logs_path(self) -> Path:
        return self.data_dir / "logs"

    @property
    def binds_loopback(self) -> bool:
        """Whether the daemon listens only on a loopback address."""
        return ipaddress.ip_address(self.bind).is_loopback

    @property
    def local_url(self) -> str:
        """The URL a client on this machine uses to reach the daemon."""
        host = self.bind
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def default_config_path() -> Path:
    """``<user config dir>/config.toml`` (e.g. ``~/.config/agent-harbor/config.toml``)."""
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        annotation = str(field.annotation)
        if raw[:1] in "[{" and ("list" in annotation or "dict" in annotation):
            try:
                layer[name] = json.loads(raw)
                continue
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()}: not valid JSON ({exc.msg})") from exc
        if "list" in annotation:
            layer[name] = [item for item in raw.split(",") if item]
        else:
            layer[name] = raw
    return layer


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_settings(
    *,
    config: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the :class:`Settings` in force.

    Args:
        config: a TOML file given explicitly (must exist); else the default path, if present.
        flags: values from the command line; ``None`` values mean "not given".
        environ: the environment to read ``AH_*`` from (default ``os.environ``).

    Raises:
        ConfigError: a file that cannot be read, or a value that does not validate; the message
            names the setting and the layer it came from.
    """
    environ = os.environ if environ is None else environ
    if config is not None and not config.exists():
        raise ConfigError(f"config file {config} does not exist")
    env_layer = _from_environment(environ)
    file_path = config or Path(env_layer.pop("config", "") or default_config_path())
    layers = [("config file", _from_file(file_path)), ("environment", env_layer),
              ("command line", {k: v for k, v in (flags or {}).items() if v is not None})]
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged.update(layer)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            origin = next((label for label, layer in reversed(layers) if err["loc"][0] in layer), "default")
            problems.append(f"{name} ({origin}): {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from exc
