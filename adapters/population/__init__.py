"""The national population database (CSDLQG về dân cư): citizen verification and look-up over
SOAP 1.1 (namespace ``http://dancuquocgia.bca``).

The hub asks it whether a citizen with given details exists (``XacThucThongTinCongDan``) and,
when configured, for the citizen's record (``TraCuuThongTinCongDan``). The registry imports this
module for every adapter, so it stays light: zeep, the worker and the simulator are imported only
when built.
"""

from __future__ import annotations

from hub.adapters import AdapterContext, AdapterSpec, Handler, Simulator

NAME = "population"


def _make_handler(ctx: AdapterContext) -> Handler:
    from adapters.population.worker import make_handler

    return make_handler(ctx)


def _make_simulator(**switches: object) -> Simulator:
    from adapters.population.simulator import make_simulator

    return make_simulator(**switches)


adapter = AdapterSpec(
    name=NAME,
    description="National population database: citizen verification (XacThucThongTinCongDan) "
    "and look-up (TraCuuThongTinCongDan), SOAP 1.1",
    bindings=["citizen.verification-requested.#"],
    make_handler=_make_handler,
    make_simulator=_make_simulator,
    # Verifications are independent of each other: no single active consumer needed.
    ordered=False,
)
