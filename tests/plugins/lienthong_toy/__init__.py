"""A sixth, toy adapter that lives in the test suite: it proves a new system is added without
touching hub/. It "delivers" a dossier by POSTing it to a toy HTTP system."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Request

from hub.adapters import AdapterContext, AdapterSpec, Event
from hub.envelope import Envelope
from hub.errors import PermanentError, RetryableError
from hub.outbound import CallPolicy, PolicyConfig
from hub.simulation import Faults, SimulatorServer


class ToySystem:
    """The toy system's simulator: records what it receives."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.received: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/inbox")
        async def inbox(request: Request) -> dict[str, Any]:
            status = await self.faults.apply()
            if status:
                from fastapi import HTTPException

                raise HTTPException(status, "toy failure")
            self.received.append(await request.json())
            return {"accepted": True}

        self.server = SimulatorServer(app)


def make_handler(ctx: AdapterContext):  # type: ignore[no-untyped-def]
    policy = CallPolicy("toy", PolicyConfig(timeout=2.0, attempts=1))
    url = ctx.config["base_url"] + "/inbox"
    client = httpx.AsyncClient()

    async def handle(event: Event) -> Sequence[Envelope]:
        env = event.envelope

        async def once() -> None:
            try:
                r = await client.post(url, json={"dossier": env.subject, "type": env.type})
            except httpx.TransportError as exc:
                raise RetryableError(f"toy is unreachable: {exc}", code="system.unavailable",
                                     origin="system:toy") from None
            if r.status_code >= 500:
                raise RetryableError(f"toy answered {r.status_code}", code="system.unavailable",
                                     origin="system:toy")
            if r.status_code >= 400:
                raise PermanentError(f"toy refused: {r.text}", code="system.rejected",
                                     origin="system:toy")

        await policy.call(once)
        return []

    return handle


adapter = AdapterSpec(
    name="toy",
    description="A toy system registered from the test suite",
    bindings=["dossier.submitted.#"],
    make_handler=make_handler,
    make_simulator=ToySystem,
    ordered=False,
)
