"""The security pieces on their own: token buckets, session cookies, key storage, claims, JSON depth."""

from __future__ import annotations

from pathlib import Path

import pytest

from harbor.api.routing import MAX_JSON_DEPTH, nests_deeper_than
from harbor.config import ConfigError, Settings
from harbor.security.cookies import SessionCookies, load_or_create_secret
from harbor.security.jwt import JwtVerifier, principal_from_claims
from harbor.security.principal import LOCAL, Principal, Unauthenticated
from harbor.security.ratelimit import RateLimiter, StreamSlots, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    wait = limiter.take("a")
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    assert limiter.take("b") == 0  # another key has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("a") > 0
    clock.now += 60
    assert [limiter.take("a") for _ in range(4)][:3] == [0, 0, 0]  # refilled to the burst, not beyond


def test_a_zero_rate_disables_limiting() -> None:
    limiter = RateLimiter(rate=0, burst=1)
    assert all(limiter.take("a") == 0 for _ in range(1000))


def test_stream_slots_cap_and_release() -> None:
    slots = StreamSlots(2)
    assert slots.acquire("a")
    assert slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.acquire("a")
    assert slots.held("a") == 2
    assert all(StreamSlots(0).acquire("x") for _ in range(100))


def test_session_cookies_resist_tampering_and_expire(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path)
    assert load_or_create_secret(tmp_path) == secret
    assert (tmp_path / "session-secret").stat().st_mode & 0o077 == 0
    cookies = SessionCookies(secret, ttl=60)
    value, expires = cookies.issue("01KEY", now=1000)
    assert cookies.key_id(value, now=1000) == "01KEY"
    assert expires == 1060
    version, key_id, expiry, signature = value.split(".")
    for forged in (f"{version}.01OTHER.{expiry}.{signature}", f"{version}.{key_id}.99999999.{signature}",
                   value[:-2], "garbage", ""):
        with pytest.raises(Unauthenticated):
            cookies.key_id(forged, now=1000)
    with pytest.raises(Unauthenticated, match="expired"):
        cookies.key_id(value, now=1061)
    with pytest.raises(Unauthenticated):
        SessionCookies(b"another secret of thirty-two bytes", 60).key_id(value, now=1000)


def test_claims_give_subject_highest_role_and_tenant() -> None:
    p = principal_from_claims({"sub": "alice", "roles": ["viewer", "admin", "wizard"], "tenantId": "t1"})
    assert (p.subject, p.role, p.tenant_id, p.roles) == ("alice", "admin", "t1", ["viewer", "operator", "admin"])
    assert principal_from_claims({"sub": "bob", "role": "operator"}).role == "operator"
    assert principal_from_claims({"sub": "bob", "roles": "viewer operator"}).role == "operator"
    assert principal_from_claims({"sub": "eve", "roles": ["wizard"]}).role is None
    with pytest.raises(Unauthenticated):
        principal_from_claims({"roles": ["admin"]})


def test_roles_form_a_hierarchy() -> None:
    viewer = Principal("v", "viewer")
    assert viewer.holds("public")
    assert viewer.holds("viewer")
    assert not viewer.holds("operator")
    assert Principal("o", "operator").holds("viewer")
    assert not Principal("o", "operator").holds("admin")
    assert LOCAL.holds("admin")
    assert not Principal("n", None).holds("viewer")


def test_unusable_jwt_configuration_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="32"):
        JwtVerifier(Settings(data_dir=tmp_path, jwt_secret="short"))
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(ConfigError, match="PEM"):
        JwtVerifier(Settings(data_dir=tmp_path, jwt_public_key_file=tmp_path / "not.pem"))
    with pytest.raises(ConfigError, match="cannot read"):
        JwtVerifier(Settings(data_dir=tmp_path, jwt_jwks_file=tmp_path / "missing.json"))
    with pytest.raises(Unauthenticated, match="not configured"):
        JwtVerifier(Settings(data_dir=tmp_path)).verify("a.b.c")


def test_json_depth_limit() -> None:
    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    assert not nests_deeper_than(nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH)
    assert nests_deeper_than(nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH)
    assert nests_deeper_than({"a": [{"b": nested(MAX_JSON_DEPTH)}]}, MAX_JSON_DEPTH)
    assert not nests_deeper_than({"a": 1, "b": [1, 2, {"c": "d"}]}, 3)


def test_auth_required_satisfies_the_non_loopback_bind_check(tmp_path: Path) -> None:
    from harbor.core import Harbor
    from harbor.daemon import InsecureBind, check_bind_safety
    from harbor.store.database import open_database

    db = open_database(f"sqlite:///{tmp_path / 'h.db'}")
    settings = Settings(data_dir=tmp_path, bind="0.0.0.0", auth="required")
    assert Harbor(settings, db).auth_configured
    check_bind_safety(settings, True)  # no exception: auth is configured
    off = Settings(data_dir=tmp_path, bind="0.0.0.0")
    assert not Harbor(off, db).auth_configured
    with pytest.raises(InsecureBind):
        check_bind_safety(off, False)
