"""The national population database (CSDLQG về dân cư): citizen verification and look-up over
SOAP 1.1 (namespace ``http://dancuquocgia.bca``).

The hub asks it whether a citizen with given details exists (``XacThucThongTinCongDan``) and,
when configured, for the citizen's record (``TraCuuThongTinCongDan``). zeep, the worker and the
simulator are imported only when built: the registry imports every adapter.
"""

from __future__ import annotations

from hub.adapters import AdapterSpec
from hub.lazy import lazy

adapter = AdapterSpec(
    name="population",
    description="National population database: citizen verification (XacThucThongTinCongDan) "
    "and look-up (TraCuuThongTinCongDan), SOAP 1.1",
    bindings=["citizen.verification-requested.#"],
    make_handler=lazy("adapters.population.worker:VerificationHandler"),
    make_simulator=lazy("adapters.population.simulator:make_simulator"),
    # Verifications are independent of each other: no single active consumer needed.
    ordered=False,
)
