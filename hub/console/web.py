"""The console over HTTP, served by the hub: the JSON API (``/v1/console/...``, declared in the
OpenAPI document) and the server-rendered pages (``/console``: Jinja2, plain forms, no script,
nothing fetched beyond the hub, Vietnamese and English). Both call ``ConsoleService``.

Authentication: HTTP Basic with an operator's name and password, a session token as
``Authorization: Bearer``, or the session cookie of the pages. A request authenticated by the
cookie that changes something must carry the session's CSRF token (the form field ``csrf``, or
the ``X-CSRF-Token`` header): another site can make a browser send the cookie, not read the
token. The sign-in form carries a token of its own (double-submit cookie)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import pathlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from hub.api.openapi import (
    BUSY_CODE,
    CONNECTION_PROBLEMS,
    METHOD_NOT_ALLOWED,
    RETRY_AFTER_BUSY,
    problem,
)
from hub.console.accounts import Accounts, Session, Unauthenticated, same
from hub.console.deadletters import KINDS
from hub.console.i18n import LANGUAGES, translator
from hub.console.service import ConsoleService, Filters, Operator, Outcome
from hub.errors import AccessDenied, ClientError, HubError
from hub.store import operators as ops
from hub.store.operators import DeadLetter

HERE = pathlib.Path(__file__).resolve().parent
COOKIE = "lt_console"
LOGIN_COOKIE = "lt_console_login"
LANG_COOKIE = "lt_lang"
CSRF_HEADER = "X-CSRF-Token"
MAX_FORM = 1_048_576


@dataclass
class Console:
    service: ConsoleService
    accounts: Accounts
    secure_cookies: bool = False


_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]))


# -- authentication --------------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    operator: Operator
    session: Session | None  # None: Basic or Bearer (no cookie, no CSRF needed)
    by_cookie: bool


async def _caller(console: Console, request: Request) -> Caller:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("the Basic credentials are not base64 of name:password",
                                  field="Authorization") from None
        who = await asyncio.to_thread(console.accounts.authenticate, user, password)
        return Caller(who, None, False)
    if scheme.lower() == "bearer" and value:
        session = await asyncio.to_thread(console.accounts.session, value)
        return Caller(session.operator, session, False)
    token = request.cookies.get(COOKIE)
    if token:
        session = await asyncio.to_thread(console.accounts.session, token)
        return Caller(session.operator, session, True)
    raise Unauthenticated("sign in: HTTP Basic with an operator's name and password, or a "
                          "session (POST /v1/console/sessions)", field="Authorization")


def _check_csrf(caller: Caller, given: str | None) -> None:
    if caller.by_cookie and caller.session is not None and not (
            given and same(given, caller.session.csrf)):
        raise AccessDenied("the form's CSRF token is missing or wrong; reload the page and "
                           "send it again", code="client.csrf", field="csrf")


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise ClientError("the form is too large", field="body")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ClientError("the form is not UTF-8", field="body") from None


def _one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


# -- JSON shapes --------------------------------------------------------------------------------

def _summary(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "message_id": d.message_id, "queue": d.queue, "kind": d.kind,
            "reason_code": d.reason_code, "reason": d.reason, "source": d.source,
            "destination": d.destination, "type": d.type, "agency": d.agency,
            "dossier_code": d.dossier_code, "attempts": d.attempts,
            "parked_at": d.parked_at.isoformat(), "state": d.state,
            "first_failure_at": d.first_failure_at.isoformat() if d.first_failure_at else None,
            "last_failure_at": d.last_failure_at.isoformat() if d.last_failure_at else None,
            "replay_of": d.replay_of, "resolved_by": d.resolved_by,
            "resolution": d.resolution}


def _filters(state: str | None, kind: str | None, reason_code: str | None, source: str | None,
             destination: str | None, type: str | None, agency: str | None,
             dossier_code: str | None, older_than_minutes: float | None) -> Filters:
    return Filters(state=None if state in (None, "", "all") else state, kind=kind or None,
                   reason_code=reason_code or None, source=source or None,
                   destination=destination or None, type=type or None, agency=agency or None,
                   dossier_code=dossier_code or None, older_than_minutes=older_than_minutes)


# -- the API ------------------------------------------------------------------------------------

_SECURITY: dict[str, Any] = {"security": [{"operatorBasic": []}, {"operatorSession": []}]}
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: problem("malformed request (client.bad_request)"),
    401: problem("no, unknown or expired credentials (client.unauthenticated)"),
    403: problem("the operator's role may not do this, or the CSRF token is wrong "
                 "(client.access_denied, client.csrf)"),
    404: problem("no such dead letter (client.not_found)"),
    405: METHOD_NOT_ALLOWED,
    409: problem("the dead letter was replayed, edited or discarded already (client.conflict)"),
    422: problem("a parameter or the body does not match the contract; field names it"),
    **CONNECTION_PROBLEMS,
    503: problem("the store or the broker is unavailable (server.store_unavailable, "
                 f"server.broker_unavailable; {BUSY_CODE})", optional=RETRY_AFTER_BUSY),
}
_STATES = ("parked", "replayed", "edited", "discarded", "all")


def _json(doc: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(doc, status_code=status)


def api_router(console: Console) -> APIRouter:
    router = APIRouter(prefix="/v1/console", tags=["console"])
    service = console.service

    async def body_of(request: Request, caller: Caller) -> dict[str, Any]:
        _check_csrf(caller, request.headers.get(CSRF_HEADER))
        raw = await request.body()
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ClientError("the body is not JSON", code="client.unparseable",
                              field="body") from None
        if not isinstance(doc, dict):
            raise ClientError("the body must be a JSON object", field="body")
        return doc

    @router.post("/sessions", summary="Sign in: a session token, its CSRF token and expiry",
                 openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                     "application/json": {"schema": {
                         "type": "object", "required": ["username", "password"],
                         "properties": {"username": {"type": "string", "minLength": 1},
                                        "password": {"type": "string", "minLength": 1}}}}}}},
                 responses={201: {"description": "signed in"}, **_PROBLEMS})
    async def sign_in(request: Request) -> Response:
        try:
            doc = json.loads(await request.body())
        except ValueError:
            raise ClientError("the body is not JSON", code="client.unparseable",
                              field="body") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("username"), str) or \
                not isinstance(doc.get("password"), str):
            raise ClientError("send {\"username\": ..., \"password\": ...}",
                              field="username", code="client.schema_invalid")
        s = await asyncio.to_thread(console.accounts.sign_in, doc["username"], doc["password"])
        return _json({"token": s.token, "csrf": s.csrf, "expires_at": s.expires_at.isoformat(),
                      "username": s.operator.username, "role": s.operator.role}, 201)

    @router.get("/dead-letters", summary="Dead letters, newest first, with counts per reason",
                openapi_extra=_SECURITY, responses={200: {"description": "a page"},
                                                    **_PROBLEMS})
    async def browse(
        request: Request,
        state: Annotated[str, Query(pattern="^(parked|replayed|edited|discarded|all)$")]
        = "parked",
        kind: Annotated[str | None, Query(max_length=40)] = None,
        reason_code: Annotated[str | None, Query(max_length=200)] = None,
        source: Annotated[str | None, Query(max_length=200)] = None,
        destination: Annotated[str | None, Query(max_length=200)] = None,
        type: Annotated[str | None, Query(max_length=200)] = None,
        agency: Annotated[str | None, Query(max_length=100)] = None,
        dossier_code: Annotated[str | None, Query(max_length=100)] = None,
        older_than_minutes: Annotated[float | None, Query(ge=0, le=1e7)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Response:
        await _caller(console, request)
        f = _filters(state, kind, reason_code, source, destination, type, agency,
                     dossier_code, older_than_minutes)
        page = await asyncio.to_thread(service.browse, f, limit=limit, offset=offset)
        return _json({"items": [_summary(d) for d in page.items], "total": page.total,
                      "counts": page.counts, "limit": page.limit, "offset": page.offset})

    @router.get("/dead-letters/{dead_letter_id}", summary="One dead letter: payload (masked "
                "unless the role sees personal data), headers, history, signature, timeline",
                openapi_extra=_SECURITY, responses={200: {"description": "the dead letter"},
                                                    **_PROBLEMS})
    async def inspect(request: Request,
                      dead_letter_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
        caller = await _caller(console, request)
        ins = await asyncio.to_thread(service.inspect, dead_letter_id, caller.operator)
        return _json({**_summary(ins.letter), "envelope": ins.envelope, "masked": ins.masked,
                      "headers": ins.letter.headers if not ins.masked else _mask_headers(
                          ins.letter.headers),
                      "history": ins.letter.history, "signature": ins.signature,
                      "timeline": ins.timeline, "replays": ins.replays})

    @router.post("/dead-letters/{dead_letter_id}/replay", summary="Replay one dead letter",
                 openapi_extra={**_SECURITY, "requestBody": {"content": {"application/json": {
                     "schema": {"type": "object", "properties": {
                         "to": {"type": "string"}, "why": {"type": "string"}}}}}}},
                 responses={200: {"description": "replayed"}, **_PROBLEMS})
    async def replay(request: Request,
                     dead_letter_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
        caller = await _caller(console, request)
        doc = await body_of(request, caller)
        out = await service.replay(dead_letter_id, caller.operator, to=_opt(doc, "to"),
                                   why=str(doc.get("why") or ""))
        return _json(asdict(out))

    @router.post("/replays", summary="Replay a selection (ids) or every dead "
                 "letter matching a filter, at the configured rate",
                 openapi_extra={**_SECURITY, "requestBody": {"content": {"application/json": {
                     "schema": {"type": "object", "properties": {
                         "ids": {"type": "array", "items": {"type": "integer"}},
                         "filter": {"type": "object"}, "to": {"type": "string"},
                         "why": {"type": "string"}}}}}}},
                 responses={200: {"description": "what happened to each"}, **_PROBLEMS})
    async def replay_many(request: Request) -> Response:
        caller = await _caller(console, request)
        doc = await body_of(request, caller)
        ids = doc.get("ids")
        if ids is None:
            f = doc.get("filter")
            if not isinstance(f, dict):
                raise ClientError("send ids (a list) or filter (an object)", field="ids")
            try:
                filters = Filters(**{k: v for k, v in f.items()})
            except TypeError as exc:
                raise ClientError(f"unknown filter: {exc}", field="filter") from None
            ids = await asyncio.to_thread(service.matching_ids, filters)
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise ClientError("ids must be a list of integers", field="ids")
        outcomes = await service.replay_many(ids, caller.operator, to=_opt(doc, "to"),
                                             why=str(doc.get("why") or ""))
        return _json({"results": [asdict(o) for o in outcomes],
                      "replayed": sum(o.ok for o in outcomes)})

    @router.post("/dead-letters/{dead_letter_id}/edit", summary="Edit the envelope's data and "
                 "resubmit: re-signed by the hub, the original kept",
                 openapi_extra={**_SECURITY, "requestBody": {"required": True, "content": {
                     "application/json": {"schema": {
                         "type": "object", "required": ["data", "why"], "properties": {
                             "data": {}, "why": {"type": "string", "minLength": 1}}}}}}},
                 responses={200: {"description": "resubmitted"}, **_PROBLEMS})
    async def edit(request: Request,
                   dead_letter_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
        caller = await _caller(console, request)
        doc = await body_of(request, caller)
        if "data" not in doc:
            raise ClientError("send the corrected data", field="data",
                              code="client.missing_field")
        out = await service.edit(dead_letter_id, caller.operator, doc["data"],
                                 why=str(doc.get("why") or ""))
        return _json(asdict(out))

    @router.post("/dead-letters/{dead_letter_id}/discard", summary="Discard with a reason",
                 openapi_extra={**_SECURITY, "requestBody": {"required": True, "content": {
                     "application/json": {"schema": {
                         "type": "object", "required": ["why"], "properties": {
                             "why": {"type": "string", "minLength": 1}}}}}}},
                 responses={200: {"description": "discarded"}, **_PROBLEMS})
    async def discard(request: Request,
                      dead_letter_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
        caller = await _caller(console, request)
        doc = await body_of(request, caller)
        out = await asyncio.to_thread(service.discard, dead_letter_id, caller.operator,
                                      why=str(doc.get("why") or ""))
        return _json(asdict(out))

    @router.get("/audit", summary="The audit trail, newest first, and whether its chain holds",
                openapi_extra=_SECURITY, responses={200: {"description": "entries"},
                                                    **_PROBLEMS})
    async def audit(request: Request,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Response:
        await _caller(console, request)
        entries = await asyncio.to_thread(service.audit, limit=limit, offset=offset)
        report = await asyncio.to_thread(_verify, service)
        return _json({"entries": [e.to_json() for e in entries],
                      "chain": {"ok": report.ok, "checked": report.checked,
                                "problem": report.problem}})

    return router


def _opt(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClientError(f"{name} must be a string", field=name)
    return value


def _mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    from hub.console.masking import mask

    return {k: mask(v) for k, v in headers.items()}


def _verify(service: ConsoleService) -> ops.AuditReport:
    with service.store.engine.connect() as conn:
        return ops.verify_audit(conn)


# -- the pages ------------------------------------------------------------------------------------

Page = Callable[[Request], Awaitable[Response]]


def page_router(console: Console, destinations: Callable[[], list[str]],
                alerts: Callable[[], dict[str, Any]]) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    service = console.service

    def lang_of(request: Request) -> str:
        lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "vi"
        return lang if lang in LANGUAGES else "vi"

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        lang = lang_of(request)
        flash = request.query_params.get("flash")
        html = _env.get_template(name).render(
            lang=lang, t=translator(lang), flash=flash,
            flash_error=request.query_params.get("error") == "1", **ctx)
        response = HTMLResponse(html, status_code=status)
        if request.query_params.get("lang") in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, samesite="lax", httponly=True)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'")
        response.headers["Cache-Control"] = "no-store"
        return response

    def back(path: str, message: str, error: bool = False) -> RedirectResponse:
        query = {"flash": message, **({"error": "1"} if error else {})}
        return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303)

    async def signed_in(request: Request) -> Caller | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            session = await asyncio.to_thread(console.accounts.session, token)
        except Unauthenticated:
            return None
        return Caller(session.operator, session, True)

    @router.get("/static/console.css")
    async def css() -> Response:
        return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css")

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(24)
        response = render(request, "login.html", who=None, csrf=token)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict",
                            secure=console.secure_cookies, path="/console")
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not same(_one(form, "csrf"), expected):
            return back("/console/login", "CSRF", error=True)
        try:
            s = await asyncio.to_thread(console.accounts.sign_in, _one(form, "username"),
                                        _one(form, "password"))
        except Unauthenticated as exc:
            return back("/console/login", exc.message, error=True)
        response = RedirectResponse("/console", status_code=303)
        response.set_cookie(COOKIE, s.token, httponly=True, samesite="strict",
                            secure=console.secure_cookies, path="/",
                            max_age=int(console.accounts.ttl.total_seconds()))
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        caller = await signed_in(request)
        form = await _form(request)
        if caller is not None and caller.session is not None:
            _check_csrf(caller, _one(form, "csrf"))
            await asyncio.to_thread(console.accounts.sign_out, caller.session.token)
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("")
    async def index(request: Request) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return RedirectResponse("/console/login", status_code=303)
        q = request.query_params
        try:
            older = float(q["older_than_minutes"]) if q.get("older_than_minutes") else None
            offset = max(0, int(q.get("offset") or 0))
        except ValueError:
            return back("/console", "older_than_minutes / offset: a number", error=True)
        f = _filters(q.get("state", "parked"), q.get("kind"), q.get("reason_code"),
                     q.get("source"), q.get("destination"), q.get("type"), q.get("agency"),
                     q.get("dossier_code"), older)
        page = await asyncio.to_thread(service.browse, f, limit=50, offset=offset)
        base = {k: v for k, v in q.items() if k not in ("offset", "flash", "error") and v}
        assert caller.session is not None
        return render(request, "list.html", who=caller.operator, csrf=caller.session.csrf,
                      page=page, f=f, kinds=KINDS, states=["parked", "replayed", "edited",
                                                             "discarded", ""],
                      alerts=await asyncio.to_thread(alerts),
                      prev_url="/console?" + urlencode({**base, "offset": max(0, offset - 50)}),
                      next_url="/console?" + urlencode({**base, "offset": offset + 50}))

    @router.get("/dead-letters/{dead_letter_id}")
    async def detail(request: Request, dead_letter_id: int) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return RedirectResponse("/console/login", status_code=303)
        try:
            ins = await asyncio.to_thread(service.inspect, dead_letter_id, caller.operator)
        except HubError as exc:
            return back("/console", exc.message, error=True)
        data_json = ""
        if ins.envelope is not None and not ins.masked:
            data_json = json.dumps(ins.envelope.get("data"), ensure_ascii=False, indent=2)
        assert caller.session is not None
        return render(request, "detail.html", who=caller.operator, csrf=caller.session.csrf,
                      ins=ins, destinations=destinations(), data_json=data_json,
                      payload=json.dumps(ins.envelope, ensure_ascii=False, indent=2)
                      if ins.envelope is not None else ins.letter.body.decode("utf-8", "replace"),
                      headers=json.dumps(ins.letter.headers if not ins.masked
                                         else _mask_headers(ins.letter.headers),
                                         ensure_ascii=False, indent=2))

    async def act(request: Request, run: Callable[[Caller, dict[str, list[str]]],
                                                  Awaitable[Outcome]]) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return RedirectResponse("/console/login", status_code=303)
        form = await _form(request)
        try:
            _check_csrf(caller, _one(form, "csrf"))
            out = await run(caller, form)
        except HubError as exc:
            return back("/console", f"{exc.code}: {exc.message}", error=True)
        return back("/console", f"#{out.id}: {out.detail}")

    @router.post("/dead-letters/{dead_letter_id}/replay")
    async def replay(request: Request, dead_letter_id: int) -> Response:
        return await act(request, lambda c, f: service.replay(
            dead_letter_id, c.operator, to=_one(f, "to") or None, why=_one(f, "why")))

    @router.post("/dead-letters/{dead_letter_id}/edit")
    async def edit(request: Request, dead_letter_id: int) -> Response:
        async def run(c: Caller, f: dict[str, list[str]]) -> Outcome:
            try:
                data = json.loads(_one(f, "data"))
            except ValueError as exc:
                raise ClientError(f"the corrected data is not JSON: {exc}",
                                  field="data") from None
            return await service.edit(dead_letter_id, c.operator, data, why=_one(f, "why"))
        return await act(request, run)

    @router.post("/dead-letters/{dead_letter_id}/discard")
    async def discard(request: Request, dead_letter_id: int) -> Response:
        async def run(c: Caller, f: dict[str, list[str]]) -> Outcome:
            return await asyncio.to_thread(service.discard, dead_letter_id, c.operator,
                                           why=_one(f, "why"))
        return await act(request, run)

    @router.post("/replay")
    async def replay_selected(request: Request) -> Response:
        async def run(c: Caller, f: dict[str, list[str]]) -> Outcome:
            try:
                ids = [int(i) for i in f.get("id", [])]
            except ValueError:
                raise ClientError("id: whole numbers", field="id") from None
            outcomes = await service.replay_many(ids, c.operator, why=_one(f, "why"))
            ok = [o.id for o in outcomes if o.ok]
            failed = [f"#{o.id}: {o.detail}" for o in outcomes if not o.ok]
            return Outcome(0, not failed, f"replayed {len(ok)}" +
                           (f"; not: {'; '.join(failed)}" if failed else ""))
        return await act(request, run)

    @router.get("/audit")
    async def audit(request: Request) -> Response:
        caller = await signed_in(request)
        if caller is None:
            return RedirectResponse("/console/login", status_code=303)
        entries = await asyncio.to_thread(service.audit, limit=200)
        report = await asyncio.to_thread(_verify, service)
        assert caller.session is not None
        return render(request, "audit.html", who=caller.operator, csrf=caller.session.csrf,
                      entries=entries, report=report)

    return router


def dead_letters_last_hour(service: ConsoleService) -> int:
    since = datetime.now(UTC) - timedelta(hours=1)
    with service.store.engine.connect() as conn:
        return ops.count_dead_letters(conn, parked_after=since)
