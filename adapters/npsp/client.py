"""The portal's client over the hub's transport (``hub.transport``: failures, masking, call
policy and metrics). Above it, the protocol: a call carries ``session``, ``madonvi`` and
``service``; a reply whose ``error_code`` means "session expired" makes the client log in again
and repeat the call once; an insert of a dossier the portal already has becomes an update.
"""

from __future__ import annotations

import logging
from typing import Any

from adapters.npsp.config import NpspConfig
from adapters.npsp.mapping import NpspMapping
from hub.adapterconfig import credentials
from hub.contracts import Contract
from hub.errors import PermanentError, RetryableError
from hub.outbound import CallPolicy
from hub.privacy import collect
from hub.systemclient import SystemClient
from hub.transport import Request, Said, pools
from hub.transport.session import Session

NAME = "npsp"
# Connections kept for the portal: above the worker's concurrency (Settings.worker_concurrency,
# mappings/topology.toml), so a call never waits for one.
CALLS_IN_FLIGHT = 512
ORIGIN = f"system:{NAME}"
log = logging.getLogger(__name__)


class AlreadyExists(PermanentError):
    """An insert of a dossier the portal already has (the caller updates instead)."""

    code = "system.already_exists"


class DossierUnknown(RetryableError):
    """The portal does not know the dossier yet. Its own sync may still be in the retry tiers,
    so this is worth retrying later."""

    code = "system.dossier_unknown"


class NpspClient(SystemClient):
    def __init__(self, config: NpspConfig, mapping: NpspMapping, contract: Contract, *,
                 policy: CallPolicy | None = None) -> None:
        super().__init__(
            NAME, "the portal", config, config.base_url, contract, policy=policy,
            headers={"dstcode": config.dstcode},
            auth_hint="the dstcode header and the platform's access rights",
            # The worker's concurrency (the destination's, hub.broker.consumer) bounds the
            # calls in flight, and the policy's rate limit their pace: a pool smaller than
            # the concurrency would only queue calls here (httpx's default is 100, 20 kept
            # alive); aiohttp's pool costs a third of httpx's own per call (hub.transport.aio).
            transport=pools.for_calls(CALLS_IN_FLIGHT),
        )
        self.config, self.mapping, self.replies = config, mapping, mapping.replies
        m = mapping
        self._personal = {m.body["password"], m.dossier["applicant_name"],
                          m.dossier["applicant_identity"], m.identity["number"],
                          m.progress["officer"]}
        self.session = Session(self._login)

    def explain(self, doc: dict[str, Any]) -> Said:
        return self.replies.explain(doc)

    async def _exchange(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        request = Request(what, path, body=body, personal=collect(body, self._personal))
        return await self.outbound.call(request, self.replies.reader(what))

    async def _login(self) -> str:
        b = self.mapping.body
        user, password = credentials(self.config.username_env, self.config.password_env)
        doc = await self._exchange(
            self.config.auth_path, {b["username"]: user, b["password"]: password}, "login"
        )
        rule = self.replies.rule(doc)
        session = doc.get(b["session"])
        if rule.kind != "ok" or not isinstance(session, str) or not session:
            raise PermanentError(
                self.replies.describe(doc, rule, "login")
                + f"; check the account in {self.config.username_env}/{self.config.password_env}",
                code="system.login_failed", origin=ORIGIN,
            )
        log.info("logged in to the portal as %s (login #%d)", user, self.session.logins + 1)
        return session

    async def call(self, service: str, fields: dict[str, Any], *, agency: str) -> dict[str, Any]:
        """One call of the portal with the session, re-logging in once if it has expired."""
        b = self.mapping.body
        for attempt in (1, 2):
            token = await self.session.token()
            body = {b["session"]: token, b["agency"]: self.config.madonvi or agency,
                    b["service"]: service, **fields}
            if self.config.validate_requests:
                self.contract.validate(f"{service}.request", body)
            doc = await self._exchange(self.config.integration_path, body, service)
            rule = self.replies.rule(doc)
            if rule.kind == "ok":
                return doc
            if rule.kind == "session_expired":
                self.session.forget(token)
                if attempt == 1:
                    log.info("portal session expired during %s; logging in again", service)
                    continue
                raise RetryableError(
                    self.replies.describe(doc, rule, service) + "; refused again right after a new "
                    "login, will retry later",
                    code="system.session_expired", origin=ORIGIN,
                )
            described = self.replies.describe(doc, rule, service)
            if rule.kind == "already_exists":
                raise AlreadyExists(described, origin=ORIGIN)
            if rule.kind == "not_found":
                raise DossierUnknown(
                    described + "; its own sync may still be on its way, retrying later",
                    origin=ORIGIN,
                )
            raise PermanentError(described, code="system.rejected", origin=ORIGIN)
        raise AssertionError("unreachable")  # pragma: no cover

    async def sync_dossiers(
        self, records: list[dict[str, Any]], *, update: bool, agency: str
    ) -> dict[str, Any]:
        """``DongBoHoSoMC`` with ``isUpdating`` "True" (update) or "False" (insert)."""
        m = self.mapping
        flag = m.updating["update" if update else "insert"]
        return await self.call(
            m.calls["sync_dossiers"], {m.body["updating"]: flag, m.body["data"]: records},
            agency=agency,
        )

    async def upsert_dossier(self, record: dict[str, Any], *, agency: str) -> str:
        """Insert; when the portal says the dossier already exists, update it instead.
        Returns "inserted" or "updated"."""
        try:
            await self.sync_dossiers([record], update=False, agency=agency)
            return "inserted"
        except AlreadyExists:
            await self.sync_dossiers([record], update=True, agency=agency)
            return "updated"

    async def report_progress(
        self, records: list[dict[str, Any]], *, agency: str
    ) -> dict[str, Any]:
        """``CapNhatTienDoHoSoMC``."""
        m = self.mapping
        return await self.call(
            m.calls["report_progress"], {m.body["data"]: records}, agency=agency
        )

    async def lookup(self, dossier_code: str, *, agency: str) -> dict[str, Any] | None:
        """``TraCuuHoSo``: the portal's record of a dossier, or None if it has none."""
        m = self.mapping
        doc = await self.call(
            m.calls["lookup"], {m.body["lookup_code"]: dossier_code}, agency=agency
        )
        results = doc.get(m.body["result"]) or []
        if not isinstance(results, list):
            raise RetryableError(
                f"the portal's TraCuuHoSo reply has a {m.body['result']!r} that is not a list",
                code="system.bad_reply", origin=ORIGIN,
            )
        code_field = m.dossier["code"]
        for record in results:
            if isinstance(record, dict) and record.get(code_field) == dossier_code:
                return record
        return None
