"""The National Public Service Portal (Cổng Dịch vụ công quốc gia, NPSP).

The hub keeps the portal told of every dossier (``DongBoHoSoMC``), every status change and every
processing step (``CapNhatTienDoHoSoMC``). The registry imports this module for every adapter,
so it stays light: the worker, client and simulator are imported only when built.
"""

from __future__ import annotations

from hub.adapters import AdapterSpec
from hub.lazy import lazy

NAME = "npsp"

adapter = AdapterSpec(
    name=NAME,
    description="National Public Service Portal: dossier sync (DongBoHoSoMC) and progress "
    "(CapNhatTienDoHoSoMC) over the national data-sharing platform",
    bindings=[
        "dossier.submitted.#",
        "dossier.status-changed.#",
        "dossier.progress-reported.#",
    ],
    make_handler=lazy("adapters.npsp.worker:make_handler"),
    make_simulator=lazy("adapters.npsp.simulator:NpspSimulator"),
    # A dossier's status updates must reach the portal in order.
    ordered=True,
)
