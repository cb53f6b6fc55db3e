"""A daemon with ``auth = "required"``, its keys (made with ``ah keys create``), and JWT material."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import DaemonProcess

API = "/api/v1"
HS_SECRET = "test-secret-0123456789abcdef-0123456789abcdef"
ISSUER = "https://issuer.example.test"
AUDIENCE = "agent-harbor-test"


def cli(*argv: str, check: bool = True, env_key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ah ...`` as a user would (``env_key``: an API key in ``AH_API_KEY``)."""
    env = {**os.environ, **({"AH_API_KEY": env_key} if env_key else {})}
    return subprocess.run([sys.executable, "-m", "harbor.cli", *argv], capture_output=True, text=True, timeout=60,
                          check=check, env=env)


def create_key(data_dir: Path, role: str, tenant: str | None = None, name: str | None = None) -> str:
    """``ah keys create``: only the key on stdout."""
    argv = ["keys", "create", "--role", role, "--data-dir", str(data_dir)]
    argv += ["--tenant", tenant] if tenant else []
    argv += ["--name", name] if name else []
    key = cli(*argv).stdout
    assert key.count("\n") == 1, key
    assert key.startswith("ah_"), key
    return key.strip()


def rsa_key_pair() -> tuple[Any, bytes]:
    """A fresh RSA private key and its public key as PEM."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public_pem


@dataclass
class Secured:
    """The secured daemon, its keys by name, and the RSA key its public key file holds."""

    daemon: DaemonProcess
    rsa_private: Any
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.daemon.url

    def client(self, who: str | None = None, **kwargs: Any) -> httpx.Client:
        """A client sending ``who``'s key (``None``: no credential)."""
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"ApiKey {self.keys[who]}"
        return self.daemon.client(headers=headers, **kwargs)

    def token(self, alg: str = "HS256", **claims: Any) -> str:
        """A JWT the daemon accepts unless ``claims`` spoil it (``exp``/``aud``/``iss`` default valid)."""
        body = {"sub": "jwt-user", "roles": ["operator"], "exp": int(time.time()) + 600, "iss": ISSUER,
                "aud": AUDIENCE, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        key = HS_SECRET if alg == "HS256" else self.rsa_private
        return jwt.encode(body, key, algorithm=alg)


def audited(admin: httpx.Client, request_id: str) -> dict[str, Any]:
    """The audit entry of one request (every response carries its X-Request-ID)."""
    items = admin.get(f"{API}/audit", params={"perPage": 200}).json()["items"]
    found = [e for e in items if e["requestId"] == request_id]
    assert len(found) == 1, (request_id, items[:5])
    return found[0]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A daemon with auth required, HS256 and RS256 bearer tokens, generous rate limits (the
    limits have their own module), at most 3 open streams per principal."""
    root = tmp_path_factory.mktemp("secured")
    data = root / "data"
    private, public_pem = rsa_key_pair()
    (root / "jwt.pub").write_bytes(public_pem)
    admin = create_key(data, "admin", name="root")  # before the daemon ever ran: the CLI migrates
    env = {"AH_JWT_SECRET": HS_SECRET, "AH_JWT_PUBLIC_KEY_FILE": str(root / "jwt.pub"), "AH_JWT_ISSUER": ISSUER,
           "AH_JWT_AUDIENCE": AUDIENCE, "AH_RATE_LIMIT_PER_SECOND": "1000", "AH_RATE_LIMIT_BURST": "2000",
           "AH_MAX_STREAMS_PER_PRINCIPAL": "3"}
    proc = DaemonProcess(data, "--auth", "required", "--log-level", "debug", env=env).start()
    secured = Secured(proc, private, {"admin": admin})
    try:
        # While it runs: more keys, some from the CLI, some from the API.
        secured.keys["viewer"] = create_key(data, "viewer", name="viewer")
        secured.keys["op_a"] = create_key(data, "operator", tenant="tenant-a", name="a")
        with secured.client("admin") as c:
            for name, body in {"operator": {"role": "operator"},
                               "op_b": {"role": "operator", "tenantId": "tenant-b"},
                               "admin_b": {"role": "admin", "tenantId": "tenant-b"}}.items():
                r = c.post(f"{API}/keys", json={**body, "name": name})
                assert r.status_code == 201, r.text
                secured.keys[name] = r.json()["key"]
        yield secured
    finally:
        proc.stop()
