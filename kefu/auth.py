"""Who is calling: a bearer token (stored hashed) or a host-signed JWT → a Principal."""

import jwt
from flask import current_app

from kefu import db
from kefu.errors import Unauthorized, has_lone_surrogate
from kefu.models import Token, User
from kefu.principal import Principal, hash_token, principal_for
from kefu.services import accounts


def authenticate(raw: object) -> Principal:
    """Resolve a bearer token or a host JWT (with or without ``Bearer ``)."""
    if not isinstance(raw, str) or not raw.strip():
        raise Unauthorized("token is required")
    token = raw.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if token.count(".") == 2:
        return _from_host_jwt(token)
    with db.read():
        user = User.select().join(Token).where(Token.token_hash == hash_token(token)).first()
        if user is None:
            raise Unauthorized("Invalid or expired token")
        if not user.is_active:  # as for a host JWT: the token is right, the account is off
            raise Unauthorized("Account is disabled")
        return principal_for(user)


def _from_host_jwt(token: str) -> Principal:
    secret = current_app.config["JWT_SECRET"]
    if not secret:
        raise Unauthorized("Host JWT sign-in is not enabled (KEFU_JWT_SECRET is unset)")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=current_app.config["JWT_LEEWAY_SECONDS"],
            # RFC 7519 makes ``sub`` a string, but host applications often put their
            # numeric user id there as a number: 998877 and "998877" are one user.
            options={"require": ["sub"], "verify_sub": False},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("Token has expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("Token signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"Invalid token: {exc}") from None
    sub, name, avatar = claims["sub"], claims.get("name"), claims.get("avatar")
    if isinstance(sub, bool) or not isinstance(sub, str | int) or sub == "":
        raise Unauthorized("Invalid token: sub must be a non-empty string or an integer")
    sub = str(sub)
    if len(sub) > 150:  # what the account keeps of it (a longer one failed on PostgreSQL)
        raise Unauthorized("Invalid token: sub must be at most 150 characters")
    if not all(value is None or isinstance(value, str) for value in (name, avatar)):
        raise Unauthorized("Invalid token: name and avatar must be strings")
    if any(value and "\x00" in value for value in (sub, name, avatar)):
        # PostgreSQL stores no NUL in text: refused alike on every database.
        raise Unauthorized("Invalid token: claims must not contain NUL characters")
    if has_lone_surrogate([sub, name, avatar]):
        raise Unauthorized("Invalid token: claims must be valid Unicode (a lone surrogate)")
    user = accounts.provision_host_user(sub, name, avatar)
    if not user.is_active:
        raise Unauthorized("Account is disabled")
    return principal_for(user)
