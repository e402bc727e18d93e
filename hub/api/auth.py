"""Who is calling, and what may it send.

Each upstream system has an entry in ``mappings/clients.toml`` (``Settings.clients_file``): its
system identifier, its access list (event types and agencies, default deny) and its
credentials, never in clear: API keys and OAuth2 client secrets as SHA-256 hex digests, client
certificates as the SHA-256 fingerprint of their DER that a TLS terminator passes on in
``X-Client-Cert-SHA256``. OAuth2 bearer tokens are short-lived JWTs (HS256) signed with a secret
the hub keeps in its data directory, so every worker process accepts every other's tokens.

A fingerprint is public, so the header is honoured only from a trusted TLS terminator
(``Settings.trusted_proxies``): the ``RequestPeer`` middleware notes, for each request carrying
the header, whether its connection's peer is one, and ``authenticate`` refuses the header from
anyone else. A client with ``require_certificate`` needs its certificate as well as its API key
or bearer token.

Shared by the REST and SOAP entry points: ``ClientRegistry.authenticate(headers)`` then
``registry.authorize(client, event_type, agency_code)``; the callbacks of systems that do not
prove their calls themselves use the same registry, and ``authorize_callback(client, system)``
(the entry's ``callbacks``, default deny).

The caller's address for logs and metrics is ``request_address()``: the connection's peer, or
the client a trusted proxy names in ``X-Forwarded-For``; a header from anyone else is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.api.errors import Unauthenticated
from hub.envelope import check_source
from hub.errors import ClientError, ConfigError, HubError
from hub.files import private_dir

# The access list (what a client may send) belongs to the intake; re-exported for the doors.
from hub.intake.access import ClientIdentity as ClientIdentity
from hub.intake.access import authorize_agency as authorize_agency
from hub.intake.access import authorize_callback as authorize_callback
from hub.intake.access import authorize_type as authorize_type

API_KEY_HEADER = "X-API-Key"
AUTHORIZATION_HEADER = "Authorization"
CLIENT_CERT_HEADER = "X-Client-Cert-SHA256"
TOKEN_ISSUER = "lienthong"
DEFAULT_TOKEN_TTL = 300.0
_HEX64 = r"^[0-9a-f]{64}$"
_ADAPTER_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


def sha256_hex(secret: str) -> str:
    """The digest under which a key or secret is stored in clients.toml."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A fresh API key or client secret: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


# -- the connection's peer --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Peer:
    """The other end of a request's connection, as the ASGI server gives it (``scope["client"]``),
    whether it is a trusted TLS terminator, and, only when it is, the client it says it
    forwards (``X-Forwarded-For``)."""

    host: str | None
    trusted: bool
    forwarded_for: str | None = None

    @property
    def address(self) -> str | None:
        """The caller's address as far as the hub can trust it: the one a trusted proxy
        forwards, else the connection's."""
        return self.forwarded_for or self.host


UNKNOWN_PEER = Peer(None, False)
FORWARDED_FOR_HEADER = "X-Forwarded-For"
_FORWARDED_RAW = FORWARDED_FOR_HEADER.lower().encode()


class TrustedProxies:
    """The addresses and networks of ``Settings.trusted_proxies``."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def trusts(self, host: str | None) -> bool:
        if host is None:
            return False  # a Unix socket, or a server that does not say
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # not an address (Starlette's test client says "testclient")
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        # An address of the other IP version is never in a network (no error).
        return any(address in network for network in self.networks)


def resolve_peer(scope: Scope, proxies: TrustedProxies) -> Peer:
    """The peer of a request: its connection's, and, when that is a trusted proxy, the client
    the proxy names in ``X-Forwarded-For`` (read from the right: the nearest hop that is not
    itself a trusted proxy; anything that is not an address ends the walk). From any other peer
    the header is ignored, whatever it says: a client can write anything there."""
    client = scope.get("client")
    host = str(client[0]) if client else None
    if not proxies.trusts(host):
        return Peer(host, False)
    hops = [hop.strip() for name, value in scope["headers"] if name == _FORWARDED_RAW
            for hop in value.decode("latin-1").split(",")]
    forwarded: str | None = None
    for hop in reversed(hops):
        try:
            forwarded = str(ipaddress.ip_address(hop))
        except ValueError:
            break
        if not proxies.trusts(forwarded):
            break
    return Peer(host, True, forwarded)


class _Origin:
    """The peer of the request being handled, worked out on first use: most requests never
    need it (a refusal, a certificate, a callback parser logging who called)."""

    __slots__ = ("_peer", "_proxies", "_scope")

    def __init__(self, scope: Scope, proxies: TrustedProxies) -> None:
        self._scope = scope
        self._proxies = proxies
        self._peer: Peer | None = None

    def peer(self) -> Peer:
        if self._peer is None:
            self._peer = resolve_peer(self._scope, self._proxies)
        return self._peer


# Set by RequestPeer for the request being handled. A context variable rather than a parameter
# threaded through the entry points: the SOAP pipeline and the adapters' callback parsers are
# framework-free and see only headers, and only the ASGI layer knows the connection. Outside a
# request (or in an app without the middleware) the peer is unknown, so a certificate header is
# refused: the check fails closed.
_request_origin: ContextVar[_Origin | None] = ContextVar("lienthong_request_origin",
                                                         default=None)


class RequestPeer:
    """ASGI middleware: makes the request's peer known to ``current_peer`` (for
    ``ClientRegistry.authenticate``, which honours the certificate header only from a trusted
    TLS terminator) and to ``request_address``. The peer is worked out only if asked for."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.proxies = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _request_origin.set(_Origin(scope, self.proxies))
        try:
            await self.app(scope, receive, send)
        finally:
            _request_origin.reset(token)


def current_peer() -> Peer:
    """The peer of the request being handled (``UNKNOWN_PEER`` outside one)."""
    origin = _request_origin.get()
    return UNKNOWN_PEER if origin is None else origin.peer()


def request_address() -> str | None:
    """The address of the client calling now, for logs and metrics: the TCP peer's, or the
    client a trusted proxy (``Settings.trusted_proxies``) forwards in ``X-Forwarded-For``;
    None outside a request. Usable from a callback parser (it runs in the request's context,
    also in a worker thread). Never read ``X-Forwarded-For`` from the headers directly: any
    client can write it."""
    return current_peer().address


class OAuthError(ClientError):
    """A refusal of the token endpoint; ``oauth_error`` is the RFC 6749 error name, also put in
    the problem body as ``error`` so stock OAuth2 clients understand it."""

    def __init__(self, message: str, *, code: str, oauth_error: str, http_status: int,
                 field: str | None = None) -> None:
        super().__init__(message, code=code, field=field)
        self.oauth_error = oauth_error
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    expires_in: int
    token_type: str = "Bearer"

    def to_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "token_type": self.token_type,
                "expires_in": self.expires_in}


class TokenIssuer:
    """Short-lived bearer tokens: JWT (HS256) with ``sub`` = system id, ``iat``, ``exp``."""

    def __init__(self, secret: bytes, ttl: float = DEFAULT_TOKEN_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ConfigError("the token secret must be at least 32 bytes")
        self._key = OctKey.import_key(secret)
        self.ttl = ttl
        self._clock = clock

    def issue(self, system_id: str) -> TokenGrant:
        now = int(self._clock())
        ttl = max(1, int(self.ttl))
        claims = {"iss": TOKEN_ISSUER, "sub": system_id, "iat": now, "exp": now + ttl}
        return TokenGrant(jwt.encode({"alg": "HS256"}, claims, self._key), ttl)

    def check(self, token: str) -> str:
        """The system id the token was issued to; ``Unauthenticated`` if it is not one of ours
        or has expired."""
        try:
            claims = jwt.decode(token, self._key, algorithms=["HS256"]).claims
        except (JoseError, ValueError):
            raise Unauthenticated(
                "the bearer token is not one the hub issued (bad format or signature); request "
                "a token at POST /v1/oauth/token",
                field=AUTHORIZATION_HEADER,
            ) from None
        exp, sub = claims.get("exp"), claims.get("sub")
        if claims.get("iss") != TOKEN_ISSUER or not isinstance(exp, int) or not isinstance(
                sub, str):
            raise Unauthenticated("the bearer token lacks iss, sub or exp; request a new one "
                                  "at POST /v1/oauth/token", field=AUTHORIZATION_HEADER)
        if exp <= self._clock():
            at = datetime.fromtimestamp(exp, UTC).isoformat()
            raise Unauthenticated(
                f"the bearer token expired at {at}; request a new one at POST /v1/oauth/token",
                field=AUTHORIZATION_HEADER,
            )
        return sub


def load_or_create_secret(path: Path) -> bytes:
    """The token-signing secret kept at ``path`` (created once, mode 0600). Several worker
    processes may race to create it: each writes a temporary file and hard-links it into place,
    which fails if another got there first, so every process ends up with the same secret."""
    private_dir(path.parent)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data = path.read_bytes()
    if len(data) < 32:
        raise ConfigError(f"{path} holds fewer than 32 bytes; delete it to have it recreated")
    return data


class _ClientEntry(BaseModel):
    """One ``[[clients]]`` table of clients.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system_id: str
    name: str = Field(min_length=1)
    allowed_types: list[str] = Field(default_factory=list)
    allowed_agencies: list[str] = Field(default_factory=list)
    api_key_sha256: list[str] = Field(default_factory=list)
    oauth_client_id: str | None = None
    oauth_secret_sha256: str | None = Field(default=None, pattern=_HEX64)
    cert_sha256: list[str] = Field(default_factory=list)
    # Adapters whose callback this system may call (POST /v1/callbacks/<name>); default none.
    callbacks: list[str] = Field(default_factory=list)
    # Both factors: the API key or bearer token AND one of cert_sha256 on every request, so a
    # leaked key or secret alone is not enough. A flag of its own rather than implied by
    # listing cert_sha256: listing a fingerprint (say, before the terminator passes it on)
    # then never locks a client out by surprise, a certificate can stay a credential on its
    # own for systems that have nothing else, and the file says which clients need both.
    require_certificate: bool = False

    @field_validator("system_id")
    @classmethod
    def _system(cls, v: str) -> str:
        try:
            return check_source(v, "system_id")
        except HubError as exc:
            raise ValueError(exc.message) from None

    @field_validator("api_key_sha256", "cert_sha256")
    @classmethod
    def _digests(cls, v: list[str]) -> list[str]:
        out = [_fingerprint(d) for d in v]
        for d in out:
            if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
                raise ValueError(f"{d!r} is not a SHA-256 hex digest (64 hex digits); store "
                                 "sha256(key), never the key itself")
        return out

    @field_validator("callbacks")
    @classmethod
    def _callbacks(cls, v: list[str]) -> list[str]:
        for name in v:
            problem = callback_name_problem(name)
            if problem is not None:
                raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _both_factors(self) -> _ClientEntry:
        if not self.require_certificate:
            return self
        if not self.cert_sha256:
            raise ValueError(f"{self.system_id}: require_certificate is true but cert_sha256 is "
                             "empty; list the SHA-256 fingerprint of its client certificate")
        if not self.api_key_sha256 and self.oauth_client_id is None:
            raise ValueError(f"{self.system_id}: require_certificate is true but it has no API "
                             "key nor OAuth2 client; give it api_key_sha256 or oauth_client_id "
                             "(the certificate is required with one of them, not instead)")
        return self


class _OAuthSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token_ttl_seconds: float = Field(default=DEFAULT_TOKEN_TTL, gt=0)


class _ClientsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    oauth: _OAuthSection = Field(default_factory=_OAuthSection)
    clients: list[_ClientEntry] = Field(default_factory=list)


def callback_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an entry of a client's ``callbacks``, or None."""
    if _ADAPTER_NAME.fullmatch(name):
        return None
    return (f"{name!r:.40} is not an adapter name; list the names of the adapters whose "
            "callback the system may call, exactly as in /v1/callbacks/<name> (no patterns: "
            "each callback is granted on its own)")


def _fingerprint(value: str) -> str:
    # Terminators print fingerprints as upper-case hex, often with colons: normalise.
    return value.strip().replace(":", "").lower()


@dataclass
class ClientRegistry:
    """The configured upstream systems and their credentials."""

    clients: list[ClientIdentity]
    tokens: TokenIssuer
    _by_key: dict[str, ClientIdentity] = field(default_factory=dict)
    _by_cert: dict[str, ClientIdentity] = field(default_factory=dict)
    _by_oauth: dict[str, tuple[str, ClientIdentity]] = field(default_factory=dict)
    _by_system: dict[str, ClientIdentity] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, *, token_secret: bytes | None = None,
             clock: Callable[[], float] = time.time) -> ClientRegistry:
        """Read clients.toml. Without ``token_secret`` a random one is used (tokens then only
        hold in this process: fine for tests, not for several workers)."""
        try:
            with Path(path).open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"the clients file {path} does not exist; create it (see "
                              "mappings/clients.toml) or set LIENTHONG_CLIENTS_FILE") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_dict(raw, token_secret=token_secret, clock=clock, source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, token_secret: bytes | None = None,
                  clock: Callable[[], float] = time.time,
                  source: str = "clients") -> ClientRegistry:
        try:
            doc = _ClientsFile.model_validate(raw)
        except PydanticValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{source}: {where}: {err['msg']}", field=where) from None
        tokens = TokenIssuer(token_secret or secrets.token_bytes(32),
                             doc.oauth.token_ttl_seconds, clock)
        registry = cls(clients=[], tokens=tokens)
        for entry in doc.clients:
            registry._add(entry, source)
        return registry

    def _add(self, entry: _ClientEntry, source: str) -> None:
        if entry.system_id in self._by_system:
            raise ConfigError(f"{source}: system {entry.system_id} is listed twice; merge the "
                              "two entries", field="system_id")
        ident = ClientIdentity(entry.system_id, entry.name, frozenset(entry.allowed_types),
                               frozenset(entry.allowed_agencies), entry.require_certificate,
                               frozenset(entry.callbacks))
        self.clients.append(ident)
        self._by_system[ident.system_id] = ident
        for digest in entry.api_key_sha256:
            self._unique(self._by_key, digest, ident, "api_key_sha256", source)
        for digest in entry.cert_sha256:
            self._unique(self._by_cert, digest, ident, "cert_sha256", source)
        if entry.oauth_client_id is not None:
            if entry.oauth_secret_sha256 is None:
                raise ConfigError(f"{source}: {entry.system_id} has oauth_client_id but no "
                                  "oauth_secret_sha256", field="oauth_secret_sha256")
            if entry.oauth_client_id in self._by_oauth:
                raise ConfigError(f"{source}: oauth_client_id {entry.oauth_client_id!r} is "
                                  "used twice", field="oauth_client_id")
            self._by_oauth[entry.oauth_client_id] = (entry.oauth_secret_sha256, ident)

    @staticmethod
    def _unique(index: dict[str, ClientIdentity], digest: str, ident: ClientIdentity,
                name: str, source: str) -> None:
        if digest in index and index[digest] is not ident:
            raise ConfigError(f"{source}: the same {name} is given to {index[digest].system_id} "
                              f"and {ident.system_id}; credentials must be unique", field=name)
        index[digest] = ident

    def get(self, system_id: str) -> ClientIdentity | None:
        return self._by_system.get(system_id)

    # -- authentication -------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], *,
                     peer: Peer | None = None) -> ClientIdentity:
        """The client the request's credentials name. One credential names the client, in this
        order: API key, bearer token, client-certificate fingerprint; a wrong credential is
        refused even if another one would have passed. A client with ``require_certificate``
        must present its certificate too. The certificate header is refused outright unless
        ``peer`` (by default the current request's, see ``RequestPeer``) is a trusted TLS
        terminator."""
        cert = _header(headers, CLIENT_CERT_HEADER)
        if cert is not None:
            _check_terminator(peer if peer is not None else current_peer())
        client = self._by_secret(headers)
        if client is None:
            if cert is None:
                raise Unauthenticated(
                    f"no credentials; send an API key in {API_KEY_HEADER}, a bearer token from "
                    f"POST /v1/oauth/token in {AUTHORIZATION_HEADER}, or connect with a client "
                    "certificate known to the hub")
            client = self._by_certificate(cert)
            if client.require_certificate:
                raise Unauthenticated(
                    f"{client.system_id} must send its API key (header {API_KEY_HEADER}) or a "
                    f"bearer token ({AUTHORIZATION_HEADER}) as well as its client certificate",
                    field=API_KEY_HEADER)
            return client
        if client.require_certificate:
            if cert is None:
                raise Unauthenticated(
                    f"{client.system_id} must also present its client certificate: connect "
                    "through the hub's TLS terminator with it, which passes it on in "
                    f"{CLIENT_CERT_HEADER}", field=CLIENT_CERT_HEADER)
            if self._by_cert.get(_fingerprint(cert)) is not client:
                raise Unauthenticated(
                    f"the client certificate is not one of {client.system_id}'s; connect with "
                    "the certificate whose SHA-256 fingerprint the clients file lists for it",
                    field=CLIENT_CERT_HEADER)
        return client

    def _by_secret(self, headers: Mapping[str, str]) -> ClientIdentity | None:
        """The client of the API key or bearer token; None if neither was sent."""
        key = _header(headers, API_KEY_HEADER)
        if key is not None:
            client = self._by_key.get(sha256_hex(key))
            if client is None:
                raise Unauthenticated(
                    "the API key is not known to the hub; check it, or ask the hub's operator "
                    "to add its SHA-256 to the clients file", field=API_KEY_HEADER)
            return client
        auth = _header(headers, AUTHORIZATION_HEADER)
        if auth is None:
            return None
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                f"the Authorization scheme {scheme!r:.20} is not accepted; send "
                "'Bearer <token>' with a token from POST /v1/oauth/token",
                field=AUTHORIZATION_HEADER)
        system_id = self.tokens.check(token.strip())
        client = self._by_system.get(system_id)
        if client is None:
            raise Unauthenticated(f"the bearer token names {system_id}, which is no longer "
                                  "a client of the hub", field=AUTHORIZATION_HEADER)
        return client

    def _by_certificate(self, cert: str) -> ClientIdentity:
        client = self._by_cert.get(_fingerprint(cert))
        if client is None:
            raise Unauthenticated(
                "the client certificate is not known to the hub; ask the hub's operator to "
                "add its SHA-256 fingerprint to the clients file", field=CLIENT_CERT_HEADER)
        return client

    def issue_token(self, client_id: str, client_secret: str) -> TokenGrant:
        """OAuth2 client-credentials grant."""
        known = self._by_oauth.get(client_id)
        # Compare against a dummy digest for unknown ids so the timing does not reveal them.
        expected = known[0] if known else "0" * 64
        if not hmac.compare_digest(sha256_hex(client_secret), expected) or known is None:
            raise OAuthError("the client id or secret is wrong; check them or ask the hub's "
                             "operator", code="client.unauthenticated",
                             oauth_error="invalid_client", http_status=401, field="client_id")
        return self.tokens.issue(known[1].system_id)

    # -- authorization --------------------------------------------------------------------

    def authorize(self, client: ClientIdentity, event_type: str,
                  agency_code: str | None) -> None:
        """Refuse unless the client may send ``event_type`` for ``agency_code`` (default deny).
        An event without an agency is allowed only to a client allowed every agency."""
        authorize_type(client, event_type)
        authorize_agency(client, agency_code)


def _check_terminator(peer: Peer) -> None:
    if peer.trusted:
        return
    if peer.host is None:
        raise Unauthenticated(
            f"the header {CLIENT_CERT_HEADER} came over a connection whose peer the hub does "
            "not know (a Unix socket, or no request context), so it cannot be from a trusted "
            "TLS terminator; have the terminator connect over TCP from an address in the "
            "hub's trusted_proxies (LIENTHONG_TRUSTED_PROXIES)", field=CLIENT_CERT_HEADER)
    raise Unauthenticated(
        f"the header {CLIENT_CERT_HEADER} came from {peer.host}, which is not a trusted TLS "
        "terminator, and a certificate fingerprint is honoured only from one; connect through "
        f"the hub's TLS terminator, or, if {peer.host} is that terminator, add it to the hub's "
        "trusted_proxies (LIENTHONG_TRUSTED_PROXIES)", field=CLIENT_CERT_HEADER)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Starlette's Headers (and most HTTP libraries' mappings) are case-insensitive; a plain dict
    # is not, so fall back to a scan.
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    if value is None and isinstance(headers, dict):
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value
