"""A sixth, toy adapter that lives in the test suite: it proves a new system is added without
touching hub/. It "delivers" a dossier by POSTing it to a toy HTTP system."""

from fastapi import FastAPI

from hub.adapters import AdapterContext, AdapterSpec, Event, Handler
from hub.envelope import Envelope
from hub.simulation import SwitchedSystem
from hub.systemclient import json_outbound
from hub.transport import Request


class ToySystem(SwitchedSystem):
    """The toy system: keeps what it receives, unless its fault switches answer first."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        app = FastAPI()
        self.json_route(app, "/inbox", lambda doc, request: {"accepted": True}, self.received)
        super().__init__(app)


def make_handler(ctx: AdapterContext) -> Handler:
    toy = json_outbound(ctx, "toy", "the toy system")

    async def handle(event: Event) -> list[Envelope]:
        env = event.envelope
        await toy.send(Request("inbox", "/inbox", body={"dossier": env.subject, "type": env.type}))
        return []  # the toy's answer causes no event

    return handle


adapter = AdapterSpec(name="toy", description="A toy system registered from the test suite",
                      bindings=["dossier.submitted.#"], make_handler=make_handler,
                      make_simulator=ToySystem, ordered=False)
