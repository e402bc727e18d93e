"""Operators of the console: accounts with argon2 password hashes and a role, sessions that
expire (pushed on by use, ``console_session_ttl``), each with its CSRF token for forms.

A session's token is only in the operator's cookie (or Authorization header); the store keeps
its SHA-256, so a copy of the database signs nobody in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from hub.console.service import ROLES, Operator
from hub.errors import ClientError
from hub.store import Store
from hub.store.conflict import insert_ignore
from hub.store.tables import operator_sessions, operators

_HASHER = PasswordHasher()
MIN_PASSWORD = 12


class Unauthenticated(ClientError):
    code = "client.unauthenticated"
    http_status = 401


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    role: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # only returned at sign-in
    operator: Operator
    csrf: str
    expires_at: datetime


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ClientError(f"role must be one of {', '.join(ROLES)}, got {role!r}",
                          field="role")
    return role


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ClientError(f"the password has {len(password)} characters; use at least "
                          f"{MIN_PASSWORD}", field="password")
    return password


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, store: Store, session_ttl: float = 1800.0) -> None:
        self.store = store
        self.ttl = timedelta(seconds=session_ttl)

    def add(self, username: str, password: str, role: str) -> None:
        if not username or len(username) > 100 or not username.isprintable():
            raise ClientError("username must be 1 to 100 printable characters",
                              field="username")
        now = datetime.now(UTC)
        with self.store.begin() as tx:
            found = tx.connection.execute(
                insert_ignore(tx.connection, operators, ["username"]).returning(
                    operators.c.username),
                {"username": username, "password_hash": _HASHER.hash(_check_password(password)),
                 "role": _check_role(role), "disabled": 0, "created_at": now,
                 "updated_at": now}).scalar_one_or_none()
            if found is None:
                raise ClientError(f"operator {username!r} exists already; change it with "
                                  "`lienthong operators reset`", code="client.conflict",
                                  field="username")

    def list(self) -> list[Account]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(operators).order_by(operators.c.username)).mappings()
            return [Account(r["username"], r["role"], bool(r["disabled"]), r["created_at"],
                            r["updated_at"]) for r in rows]

    def _update(self, username: str, **values: object) -> None:
        with self.store.begin() as tx:
            done = tx.connection.execute(
                update(operators).where(operators.c.username == username)
                .values(updated_at=datetime.now(UTC), **values)).rowcount
            if not done:
                raise ClientError(f"no operator {username!r}; list them with `lienthong "
                                  "operators list`", code="client.not_found", field="username")
            if values.get("disabled") or "password_hash" in values:
                # Signed out everywhere: a disabled account or a new password ends sessions.
                tx.connection.execute(delete(operator_sessions)
                                      .where(operator_sessions.c.username == username))

    def disable(self, username: str) -> None:
        self._update(username, disabled=1)

    def reset(self, username: str, password: str, role: str | None = None) -> None:
        values: dict[str, object] = {"password_hash": _HASHER.hash(_check_password(password)),
                                     "disabled": 0}
        if role is not None:
            values["role"] = _check_role(role)
        self._update(username, **values)

    def authenticate(self, username: str, password: str) -> Operator:
        """The operator, or Unauthenticated with the same answer whatever was wrong."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(operators).where(operators.c.username == username)
                               ).mappings().one_or_none()
        refused = Unauthenticated("unknown operator or wrong password", field="password")
        if row is None:
            # The same work as a real check: timing does not tell which names exist.
            _HASHER.hash(password or "-")
            raise refused
        try:
            _HASHER.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            raise refused from None
        if row["disabled"]:
            raise refused
        return Operator(row["username"], row["role"])

    def sign_in(self, username: str, password: str) -> Session:
        who = self.authenticate(username, password)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        expires = now + self.ttl
        with self.store.begin() as tx:
            tx.connection.execute(delete(operator_sessions)
                                  .where(operator_sessions.c.expires_at < now))
            tx.connection.execute(operator_sessions.insert(), {
                "token_sha256": _sha(token), "username": who.username, "csrf": csrf,
                "created_at": now, "expires_at": expires})
        return Session(token, who, csrf, expires)

    def session(self, token: str) -> Session:
        """The live session of ``token``, its expiry pushed on; Unauthenticated otherwise."""
        now = datetime.now(UTC)
        with self.store.begin() as tx:
            row = tx.connection.execute(
                select(operator_sessions, operators.c.role, operators.c.disabled)
                .join(operators, operators.c.username == operator_sessions.c.username)
                .where(operator_sessions.c.token_sha256 == _sha(token))).mappings().one_or_none()
            if row is None or row["expires_at"] < now or row["disabled"]:
                raise Unauthenticated("not signed in, or the session expired; sign in again",
                                      field="session")
            expires = now + self.ttl
            tx.connection.execute(update(operator_sessions)
                                  .where(operator_sessions.c.token_sha256 == _sha(token))
                                  .values(expires_at=expires))
        return Session(token, Operator(row["username"], row["role"]), row["csrf"], expires)

    def sign_out(self, token: str) -> None:
        with self.store.begin() as tx:
            tx.connection.execute(delete(operator_sessions)
                                  .where(operator_sessions.c.token_sha256 == _sha(token)))


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
