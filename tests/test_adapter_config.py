"""Adapters' configuration (hub.adapterconfig): each adapter's typed model read from
``mappings/<name>/config.toml`` with the deployment's ``<data_dir>/adapters/<name>.toml``
merged over it; an error names the file that set the key, the dotted key and what is
expected; a key no model declares is refused; the overlay wins."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.npsp.config import NpspConfig
from adapters.payment.config import PaymentConfig
from adapters.population.config import PopulationConfig
from adapters.postal.config import PostalConfig
from adapters.provincial.config import ProvincialConfig
from hub.adapterconfig import (
    AdapterConfig,
    AdapterConfigError,
    load_adapter_config,
    optional_secret,
    overlay_dir,
)
from hub.adapters import context_for, discover, load_config
from hub.settings import PROJECT_ROOT, Settings
from hub.signing import TrustStore, generate

MODELS: dict[str, type[AdapterConfig]] = {
    "npsp": NpspConfig,
    "payment": PaymentConfig,
    "population": PopulationConfig,
    "postal": PostalConfig,
    "provincial": ProvincialConfig,
}


@pytest.fixture
def deployment(tmp_path: Path) -> Settings:
    """Settings over a copy of the shipped maps (a test may break them) and a data directory
    of the test's own, where a deployment keeps its overlays."""
    shutil.copytree(PROJECT_ROOT / "mappings", tmp_path / "mappings")
    (tmp_path / "data" / "adapters").mkdir(parents=True)
    return Settings(data_dir=tmp_path / "data", mappings_dir=tmp_path / "mappings")


def base_file(settings: Settings, name: str) -> Path:
    return settings.mappings_dir / name / "config.toml"


def overlay(settings: Settings, name: str, text: str) -> Path:
    path = settings.data_dir / "adapters" / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path} no longer has {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_shipped_configuration_reads_into_its_model(name: str) -> None:
    assert name in discover()
    config = load_adapter_config(Settings(), name, MODELS[name])
    # The shipped policy is the one the model holds, not the defaults.
    assert config.policy.timeout == 10.0 and config.policy.attempts == 3


def test_a_bad_value_in_the_shipped_file_names_that_file_the_key_and_the_range(
        deployment: Settings) -> None:
    # An overlay of the deployment is there too: the error still points at the base file.
    overlay(deployment, "npsp", 'base_url = "https://dvcqg.example.vn"\n')
    replace_in(base_file(deployment, "npsp"), "rate_per_second = 50.0", "rate_per_second = -5.0")
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "npsp", NpspConfig)
    error = caught.value
    assert error.field == "policy.rate_per_second"
    assert error.file == str(base_file(deployment, "npsp"))
    assert error.message.startswith(f"{base_file(deployment, 'npsp')}: policy.rate_per_second ")
    assert "greater than or equal to 0" in error.message and "-5.0" in error.message
    assert error.code == "server.config_invalid"


def test_a_bad_value_in_the_overlay_names_the_overlay_the_key_and_the_type(
        deployment: Settings) -> None:
    path = overlay(deployment, "payment", '[policy]\ntimeout = "fast"\n')
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "payment", PaymentConfig)
    error = caught.value
    assert (error.field, error.file) == ("policy.timeout", str(path))
    assert error.message.startswith(f"{path}: policy.timeout should be a valid number")
    assert "'fast'" in error.message and "seconds one call may take" in error.message


def test_a_value_of_the_wrong_type_is_not_converted(deployment: Settings) -> None:
    """TOML has types: the text "true" is not a boolean, the number 1 is not a string."""
    path = overlay(deployment, "provincial", 'validate_requests = "false"\nmax_updates = 1.5\n')
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "provincial", ProvincialConfig)
    error = caught.value
    # Every problem at once, the first in ``field``.
    assert error.field == "validate_requests"
    assert "validate_requests should be a valid boolean" in error.message
    assert f"{path}: max_updates should be a valid integer" in error.message


@pytest.mark.parametrize(("text", "key"), [
    ('base_ulr = "https://buudien.example.vn"\n', "base_ulr"),
    ("[policy]\ntimeuot = 5.0\n", "policy.timeuot"),
    ('[[pool.ranges]]\nfirst = "EB000000014VN"\nlast = "EB000000990VN"\ncount = 3\n',
     "pool.ranges.0.count"),
])
def test_a_typo_in_the_overlay_is_refused(deployment: Settings, text: str, key: str) -> None:
    path = overlay(deployment, "postal", text)
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "postal", PostalConfig)
    assert (caught.value.field, caught.value.file) == (key, str(path))
    assert f"{path}: {key} is not a setting" in caught.value.message


def test_a_typo_in_the_shipped_file_is_refused_with_the_known_keys(deployment: Settings) -> None:
    replace_in(base_file(deployment, "population"), "lookup = false", "look_up = false")
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "population", PopulationConfig)
    error = caught.value
    assert (error.field, error.file) == ("look_up", str(base_file(deployment, "population")))
    assert "lookup" in error.message.split("knows", 1)[1]


def test_a_missing_key_names_the_files_that_could_set_it(deployment: Settings) -> None:
    replace_in(base_file(deployment, "payment"), 'partner_code = "LIENTHONG"', "")
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "payment", PaymentConfig)
    assert caught.value.field == "partner_code"
    assert str(base_file(deployment, "payment")) in caught.value.message
    # No overlay exists: only the file that does is named.
    assert "adapters/payment.toml" not in caught.value.message
    path = overlay(deployment, "payment", 'partner_code = "DT01"\n')
    assert load_adapter_config(deployment, "payment", PaymentConfig).partner_code == "DT01"
    path.write_text("")
    with pytest.raises(AdapterConfigError) as caught:
        load_adapter_config(deployment, "payment", PaymentConfig)
    assert f"in {base_file(deployment, 'payment')} or {path}" in caught.value.message


def test_the_overlay_wins_key_by_key(deployment: Settings) -> None:
    overlay(deployment, "npsp", 'base_url = "https://dvcqg.example.vn/"\nmadonvi = "G22"\n\n'
                                "[policy]\ntimeout = 3.5\n")
    config = load_adapter_config(deployment, "npsp", NpspConfig)
    assert config.base_url == "https://dvcqg.example.vn"  # kept without its trailing slash
    assert config.madonvi == "G22"
    assert config.policy.timeout == 3.5
    # What the overlay does not name stays the shipped value, in a table it names too.
    assert config.policy.rate_per_second == 50.0 and config.policy.burst == 20
    assert config.auth_path == "/api/dvcqg/login"
    # The context the core builds an adapter with reads the same two files.
    assert NpspConfig.from_context(context_for(deployment, "npsp")) == config


def test_an_overlay_may_replace_a_table_of_arrays(deployment: Settings) -> None:
    overlay(deployment, "postal", '[[pool.ranges]]\nfirst = "EB000000014VN"\n'
                                  'last = "EB000000990VN"\n')
    config = load_adapter_config(deployment, "postal", PostalConfig)
    assert [(r.first, r.last) for r in config.ranges] == [("EB000000014VN", "EB000000990VN")]


def test_a_variable_named_in_the_file_with_a_bad_value_names_the_setting(
        deployment: Settings) -> None:
    environ = {"LIENTHONG_POPULATION_URL": "dancu.example.vn"}
    raw = load_config(deployment.mappings_dir, "population", overlay_dir(deployment))
    with pytest.raises(AdapterConfigError) as caught:
        PopulationConfig.from_mapping(raw, environ=environ)
    assert caught.value.field == "url_env"
    assert caught.value.file == str(base_file(deployment, "population"))
    assert "LIENTHONG_POPULATION_URL holds 'dancu.example.vn'" in caught.value.message


def test_the_worker_command_stops_on_a_bad_overlay_naming_it(deployment: Settings) -> None:
    """``lienthong worker provincial`` as an operator runs it, with a deployment overlay that
    sets a negative rate: it exits before it consumes, saying which file, key and range."""
    keys = generate(deployment.hub_id)
    keys.save(deployment.keys_dir)
    TrustStore(deployment.trust_dir).add(keys.certificate_pem())
    path = overlay(deployment, "provincial", "[policy]\nrate_per_second = -1\n")
    env = {**os.environ, "LIENTHONG_DATA_DIR": str(deployment.data_dir),
           "LIENTHONG_MAPPINGS_DIR": str(deployment.mappings_dir),
           "LIENTHONG_WORKER_METRICS_PORT": "0"}
    done = subprocess.run(
        [sys.executable, "-c", "from hub.cli import main; main()", "worker", "provincial"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"error: server.config_invalid [policy.rate_per_second]: {path}: "
            "policy.rate_per_second should be greater than or equal to 0, got -1") in done.stderr


def test_an_optional_secret_is_none_unless_its_variable_is_named_and_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LT_TEST_OPTIONAL_TOKEN", "")
    assert optional_secret("") is None and optional_secret("LT_TEST_OPTIONAL_TOKEN") is None
    monkeypatch.setenv("LT_TEST_OPTIONAL_TOKEN", "t0k3n")
    assert optional_secret("LT_TEST_OPTIONAL_TOKEN") == "t0k3n"
