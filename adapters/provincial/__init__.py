"""The provincial one-stop systems (Hệ thống thông tin giải quyết TTHC cấp tỉnh).

The hub delivers to a province the dossiers submitted elsewhere (online at the portal, by post),
and takes the province's status changes and processing steps in its own JSON format through
``POST /v1/callbacks/provincial``. Field names and status words differ per vendor, so they live
in ``mappings/provincial/``. The registry imports this module for every adapter, so it stays
light: the worker, client, callback parser and simulator are imported only when built.
"""

from __future__ import annotations

from hub.adapters import AdapterContext, AdapterSpec, CallbackParser, Handler, Simulator

NAME = "provincial"


def _make_handler(ctx: AdapterContext) -> Handler:
    from adapters.provincial.worker import make_handler

    return make_handler(ctx)


def _make_callback(ctx: AdapterContext) -> CallbackParser:
    from adapters.provincial.callback import make_callback

    return make_callback(ctx)


def _make_simulator(**switches: object) -> Simulator:
    from adapters.provincial.simulator import make_simulator

    return make_simulator(**switches)


adapter = AdapterSpec(
    name=NAME,
    description="Provincial one-stop systems: dossiers submitted elsewhere are delivered to the "
    "province; its status changes and progress come back through a callback",
    bindings=["dossier.submitted.#"],
    make_handler=_make_handler,
    make_callback=_make_callback,
    make_simulator=_make_simulator,
    # Only new dossiers go to a province; they do not depend on each other's order.
    ordered=False,
)
