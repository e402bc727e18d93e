"""The command line imports a group's module only when that group is called (hub.cli): a
command starts without the web stack, the broker client or every adapter's modules, and
``--help`` still lists every command."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from hub.cli import app

PROBE = """
import json, sys
from typer.testing import CliRunner
from hub.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
print(json.dumps({"exit": result.exit_code, "output": result.output,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                                    ("hub", "adapters", "uvicorn", "fastapi", "pika"))}))
"""


def _probe(*args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120, check=True)
    found: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return found


def test_a_command_imports_its_own_group_only() -> None:
    found = _probe("outbox", "status", "--help")
    assert found["exit"] == 0 and "--store-url" in str(found["output"])
    modules = set(found["modules"])  # type: ignore[call-overload]
    assert "hub.cli.outbox" in modules
    for other in ("hub.cli.serve", "hub.cli.worker", "hub.cli.console", "hub.cli.keys",
                  "uvicorn", "fastapi", "adapters.payment.runtime", "adapters.postal.runtime"):
        assert other not in modules, f"{other} imported by `lienthong outbox status --help`"


def test_an_adapter_s_commands_import_that_adapter_s_modules_only() -> None:
    found = _probe("payment", "mismatches", "--help")
    assert found["exit"] == 0 and "--reference" in str(found["output"])
    modules = set(found["modules"])  # type: ignore[call-overload]
    assert "adapters.payment.runtime" in modules
    assert "adapters.postal.runtime" not in modules


def test_help_lists_every_group_and_adapter_command() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    listed = [line.split()[1] for line in result.output.splitlines()
              if line.startswith("│ ") and len(line.split()) > 1]
    for name in ("serve", "worker", "version", "keys", "topology", "log", "clients", "store",
                 "outbox", "console", "operators", "audit", "subscriptions", "payment",
                 "postal"):
        assert name in listed, f"{name} missing from `lienthong --help`"
    assert listed.index("serve") < listed.index("keys") < listed.index("payment")


def test_a_mistyped_group_is_suggested() -> None:
    result = CliRunner().invoke(app, ["outbx", "status"])
    assert result.exit_code == 2
    assert "Did you mean 'outbox'?" in result.output
