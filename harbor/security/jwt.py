"""Bearer tokens: verifying JWTs (PyJWT) against a shared secret, a public key or a JWKS file.

Configuration (see :class:`harbor.config.Settings`): ``jwt_secret`` for HS256; ``jwt_public_key_file``
(PEM, RSA or EC) for RS256/ES256 and their longer variants; ``jwt_jwks_file`` (a JSON Web Key Set on
disk, keys picked by ``kid``). ``exp`` and ``sub`` are required; ``iss`` and ``aud`` are checked when
``jwt_issuer`` / ``jwt_audience`` are configured (and ``aud`` is then required).

Claims read: ``sub`` → subject, ``roles`` (a list, or a space/comma separated string) or ``role``
→ the highest known role, ``tenant`` / ``tenantId`` / ``tenant_id`` → tenant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from harbor.config import ConfigError, Settings
from harbor.security.principal import Principal, Unauthenticated, highest_role

#: Seconds of clock skew tolerated on ``exp``/``nbf``/``iat`` between the issuer and this machine.
LEEWAY = 10
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash (32 bytes).
MIN_SECRET_BYTES = 32
#: Longest bearer token considered (a JWT with many claims is a few KiB).
MAX_TOKEN_CHARS = 16 * 1024

_RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC_ALGS = ["ES256", "ES384", "ES512"]


def _public_key_algorithms(key: Any) -> list[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_ALGS
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ["EdDSA"]
    raise ConfigError("jwt_public_key_file: only RSA, EC and Ed25519 public keys are supported")


class JwtVerifier:
    """Verifies bearer tokens; build once per daemon (it reads the key files).

    Raises:
        ConfigError: (from the constructor) a key file that cannot be read or parsed, or a secret
            shorter than 32 bytes.
    """

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._secret: bytes | None = None
        self._public: tuple[Any, list[str]] | None = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_secret is not None:
            secret = settings.jwt_secret.get_secret_value().encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(f"jwt_secret: use at least {MIN_SECRET_BYTES} random bytes for HS256")
            self._secret = secret
        if settings.jwt_public_key_file is not None:
            try:
                key = load_pem_public_key(_read(settings.jwt_public_key_file, "jwt_public_key_file"))
            except ValueError as exc:
                raise ConfigError(f"jwt_public_key_file: {settings.jwt_public_key_file} is not a PEM "
                                  "public key") from exc
            self._public = (key, _public_key_algorithms(key))
        if settings.jwt_jwks_file is not None:
            raw = _read(settings.jwt_jwks_file, "jwt_jwks_file")
            try:
                self._jwks = jwt.PyJWKSet.from_json(raw.decode())
            except (jwt.PyJWKSetError, jwt.PyJWKError, ValueError) as exc:
                raise ConfigError(f"jwt_jwks_file: not a usable JSON Web Key Set ({exc})") from exc

    @property
    def configured(self) -> bool:
        """Whether any way to verify a token is configured (else every bearer token is refused)."""
        return self._secret is not None or self._public is not None or self._jwks is not None

    def _key_for(self, header: dict[str, Any]) -> tuple[Any, list[str]]:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise Unauthenticated("the bearer token names no usable algorithm")
        if alg.startswith("HS"):
            # Only HS256 with the configured secret: an HMAC token must never be checked against a
            # public key (the classic algorithm-confusion attack).
            if self._secret is None or alg != "HS256":
                raise Unauthenticated(f"bearer tokens signed with {alg} are not accepted here")
            return self._secret, ["HS256"]
        if self._jwks is not None:
            kid = header.get("kid")
            candidates = [k for k in self._jwks.keys if kid is None or k.key_id == kid]
            if kid is None and len(candidates) > 1:
                candidates = []
            if candidates:
                jwk = candidates[0]
                return jwk.key, [jwk.algorithm_name] if jwk.algorithm_name else [alg]
        if self._public is not None and alg in self._public[1]:
            return self._public[0], [alg]
        raise Unauthenticated(f"no configured key verifies bearer tokens signed with {alg}")

    def verify(self, token: str) -> Principal:
        """The principal a valid token names.

        Raises:
            Unauthenticated: the token is malformed, expired, not yet valid, wrongly signed, for
                another audience or issuer, or lacks ``exp``/``sub``.
        """
        if not self.configured:
            raise Unauthenticated("bearer tokens are not configured on this daemon (use an API key)")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("the bearer token is too long")
        try:
            key, algorithms = self._key_for(jwt.get_unverified_header(token))
            required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (["aud"] if self.audience else [])
            claims = jwt.decode(token, key, algorithms=algorithms, audience=self.audience, issuer=self.issuer,
                                leeway=LEEWAY,
                                options={"require": required, "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the bearer token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the bearer token comes from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the bearer token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the bearer token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not valid ({type(exc).__name__})") from None
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Subject, role and tenant from verified claims (see the module docstring)."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("the bearer token's 'sub' claim must be a non-empty string")
    raw_roles = claims.get("roles", claims.get("role", []))
    if isinstance(raw_roles, str):
        raw_roles = raw_roles.replace(",", " ").split()
    roles = [r for r in raw_roles if isinstance(r, str)] if isinstance(raw_roles, list) else []
    tenant = next((claims[k] for k in ("tenant", "tenantId", "tenant_id") if claims.get(k)), None)
    return Principal(subject=subject[:200], role=highest_role(roles),
                     tenant_id=str(tenant)[:128] if tenant is not None else None, method="jwt")


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from exc
