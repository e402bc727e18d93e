"""Which workers ``lienthong worker`` builds when an adapter cannot start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub import runtime
from hub.adapters import AdapterContext, AdapterSpec
from hub.errors import ConfigError
from hub.settings import Settings
from hub.signing import TrustStore, generate, load_signer
from hub.store import Store


def _spec(name: str, *, secret_missing: bool = False) -> AdapterSpec:
    def make_handler(ctx: AdapterContext) -> Any:
        if secret_missing:
            raise ConfigError(f"LIENTHONG_{name.upper()}_SECRET is not set; set it to the "
                              "secret the system gave", field="secret")

        async def handle(message: Any) -> None:
            return None

        return handle

    return AdapterSpec(name=name, description=name, bindings=[f"{name}.#"],
                       make_handler=make_handler)


@pytest.fixture
def built(tmp_path: Path) -> Any:
    settings = Settings(data_dir=tmp_path, name_prefix="ltworkers")
    material = generate(settings.hub_id)
    material.save(settings.keys_dir)
    TrustStore(settings.trust_dir).add(material.certificate_pem())
    signer = load_signer(settings.keys_dir, settings.hub_id)
    verifier = runtime.queue_verifier(settings)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    adapters = {"good": _spec("good"), "payment": _spec("payment", secret_missing=True)}

    def build(names: list[str] | None, skipped: list[tuple[str, ConfigError]] | None) -> Any:
        return runtime.build_workers(settings, names, store=store, signer=signer,
                                     verifier=verifier, adapters=adapters, recorder=False,
                                     skipped=skipped)

    yield build
    store.close()


def test_every_adapter_asked_for_skips_the_one_that_cannot_start(built: Any) -> None:
    skipped: list[tuple[str, ConfigError]] = []
    workers = built(None, skipped)
    assert [w.spec.name for w in workers] == ["good"]
    [(name, error)] = skipped
    assert name == "payment"
    assert "LIENTHONG_PAYMENT_SECRET" in error.message


def test_an_adapter_named_must_start(built: Any) -> None:
    with pytest.raises(ConfigError, match="LIENTHONG_PAYMENT_SECRET"):
        built(["good", "payment"], [])


def test_without_a_place_to_report_skips_nothing_is_skipped(built: Any) -> None:
    with pytest.raises(ConfigError, match="LIENTHONG_PAYMENT_SECRET"):
        built(None, None)
