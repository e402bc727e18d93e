"""The README's main command: the demo carries sample dossiers through every system. Run it as a
newcomer would (a separate process, real broker, simulators on sockets) and check its story."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_carries_dossiers_through_every_system(tmp_path: Path, amqp_url: str) -> None:
    env = {**os.environ, "LIENTHONG_AMQP_URL": amqp_url}
    run = subprocess.run(
        [sys.executable, "-m", "demo", "--data-dir", str(tmp_path / "demo")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    for line in (
        "portal (DongBoHoSoMC) has",
        "province received",
        "(matched)",
        "SOAP 1.2 ReportProgress accepted",
        "portal status of",
        "payment completed (checksum verified)",
        "postal order accepted on waybill",
        "reached the portal after the outage",
        "parked in",
        "hash chain intact",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    # Nothing the demo sent was lost or dead-lettered.
    assert ".dead            0 message(s)" in out
    assert ".unroutable      0 message(s)" in out
