"""The provincial one-stop systems (Hệ thống thông tin giải quyết TTHC cấp tỉnh).

The hub delivers to a province the dossiers submitted elsewhere (online at the portal, by post),
and takes the province's status changes and processing steps in its own JSON format through
``POST /v1/callbacks/provincial``. Field names and status words differ per vendor, so they live
in ``mappings/provincial/``. The registry imports this module for every adapter, so it stays
light: the worker, client, callback parser and simulator are imported only when built.
"""

from __future__ import annotations

from hub.adapters import AdapterSpec
from hub.lazy import lazy

NAME = "provincial"

adapter = AdapterSpec(
    name=NAME,
    description="Provincial one-stop systems: dossiers submitted elsewhere are delivered to the "
    "province; its status changes and progress come back through a callback",
    bindings=["dossier.submitted.#"],
    make_handler=lazy("adapters.provincial.worker:make_handler"),
    make_callback=lazy("adapters.provincial.callback:make_callback"),
    make_simulator=lazy("adapters.provincial.simulator:ProvincialSimulator"),
    # Only new dossiers go to a province; they do not depend on each other's order.
    ordered=False,
)
