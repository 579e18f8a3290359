"""Bearer tokens: verifying the JWTs of the auth service, and minting test ones.

A token names the user in ``sub`` and the device in ``device``. On the
embedded default the HS256 secret is generated once and kept in the data
directory, so that ``parley token`` and the server agree.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from parley.config import Settings
from parley.domain.chats import check_user_id
from parley.errors import BadRequest, Unauthorized

SECRET_FILE = "jwt-secret"
DEFAULT_TOKEN_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    device_id: str


class TokenVerifier:
    """Checks signature, expiry and claims of a bearer token."""

    def __init__(self, key: str | bytes, settings: Settings) -> None:
        self._key = key
        self._algorithms = settings.jwt_algorithms
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway_s = settings.jwt_leeway_s

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("token_missing", "A bearer token is required.")

        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway_s,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token_expired", "The token has expired.") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # Any other failure to read it (a key of the wrong kind for its
            # algorithm, bytes that are not ASCII) is a token we cannot trust.
            raise Unauthorized("token_invalid", "The token is not valid.") from None

        return _identity_from_claims(claims)


def _identity_from_claims(claims: dict) -> Identity:
    try:
        user_id = check_user_id(claims.get("sub"))
        device_id = check_user_id(claims.get("device", "default"))
    except BadRequest:
        raise Unauthorized(
            "token_invalid", "The token names no valid user or device."
        ) from None
    return Identity(user_id, device_id)


def signing_secret(settings: Settings) -> str:
    """The HS256 secret: from configuration, else generated once on disk."""
    if settings.jwt_secret:
        return settings.jwt_secret

    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create_private(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _create_private(path: Path, text: str) -> None:
    """Create the file whole, readable by its owner only, unless it exists.

    A server and ``parley token`` starting at once must agree on one secret,
    so the complete file is linked into place, which fails if one is there.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def verifier_from_settings(settings: Settings) -> TokenVerifier:
    if settings.jwt_public_key_file is not None:
        return TokenVerifier(settings.jwt_public_key_file.read_bytes(), settings)
    return TokenVerifier(signing_secret(settings), settings)


def mint_token(
    settings: Settings, user_id: str, device_id: str, ttl_s: int = DEFAULT_TOKEN_TTL_S
) -> str:
    """A token as the auth service would issue it, signed with the local secret."""
    now = int(time.time())
    claims = {
        "sub": check_user_id(user_id),
        "device": check_user_id(device_id),
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, signing_secret(settings), algorithm="HS256")
