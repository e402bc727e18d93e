"""An adapter's commands built from the functions its spec declares (hub.cli.adaptercommands):
``lienthong postal pool add|status`` run on a real store with the arguments and options of the
functions' typer annotations, and the job ``postal poll`` offered with its own arguments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.testing.store import scratch_url


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    with scratch_url(store_url, tmp_path) as url:
        yield {"LIENTHONG_DATA_DIR": str(tmp_path), "LIENTHONG_STORE_URL": url}


def run(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_admin_functions_are_commands_with_their_annotated_parameters(
    env: dict[str, str], tmp_path: Path
) -> None:
    customer = f"C{uuid.uuid4().hex[:8].upper()}"
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("EA000000028VN\n")
    added = run(env, "postal", "pool", "add", "EA000000014VN", "--file", str(numbers),
                "--first", "EA000000031VN", "--last", "EA000000045VN", "--customer", customer)
    assert f"owner='{customer}', offered=4, added=4" in added
    assert "free=4, taken=0, burned=0" in run(env, "postal", "pool", "status",
                                              "--customer", customer)
    # A parameter not annotated for typer (the runtime a test gives) is no option.
    refused = CliRunner().invoke(cli, ["postal", "pool", "status", "--runtime", "x"], env=env)
    assert refused.exit_code == 2 and "No such option" in refused.output


def test_a_job_is_a_command_with_its_arguments_and_its_docstring_as_help() -> None:
    shown = CliRunner().invoke(cli, ["postal", "poll", "--help"])
    assert shown.exit_code == 0
    assert "ORDER_NUMBERS" in shown.output.upper() and "every open order" in shown.output
    assert "Poll tracking of open orders" in shown.output


def test_a_refused_range_is_an_error_line_not_a_traceback(env: dict[str, str]) -> None:
    customer = f"C{uuid.uuid4().hex[:8].upper()}"
    for args, said in (
        (["--last", "EA000000045VN"], "[first]: --last 'EA000000045VN' ends a range that has "
                                      "no start; give its first number with --first"),
        (["--first", "EA000000045VN", "--last", "EA000000014VN"],
         "[last]: the range EA000000045VN..EA000000014VN runs backwards"),
    ):
        result = CliRunner().invoke(cli, ["postal", "pool", "add", *args, "--customer", customer],
                                    env=env)
        assert result.exit_code == 2, result.output
        assert said in result.output
        assert "Traceback" not in result.output
    assert "free=0, taken=0, burned=0" in run(env, "postal", "pool", "status",
                                              "--customer", customer)
