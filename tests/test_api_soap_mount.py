"""The hub's app serves SOAP beside REST when it has its SOAP signing key."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from hub.api.app import create_app
from hub.settings import Settings
from hub.signing import generate
from hub.store import Store


def app_for(tmp_path: Path, *, soap_key: bool) -> TestClient:
    settings = Settings(data_dir=tmp_path, clients_file=tmp_path / "clients.toml")
    settings.clients_file.write_text("")
    generate(settings.hub_id).save(settings.keys_dir)
    if soap_key:
        generate(f"{settings.hub_id}-soap", "RS256").save(settings.keys_dir)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    return TestClient(create_app(settings, store=store, relay=False))


def test_soap_is_served_with_its_key(tmp_path: Path) -> None:
    http = app_for(tmp_path, soap_key=True)
    wsdl = http.get("/soap/v1?wsdl")
    assert wsdl.status_code == 200
    assert b"IntakeSoap12" in wsdl.content
    assert http.get("/healthz").status_code == 200


def test_without_its_key_soap_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    http = app_for(tmp_path, soap_key=False)
    assert http.get("/soap/v1?wsdl").status_code == 404
    assert "lienthong keys generate" in caplog.text


def test_the_app_shortens_the_switch_interval_while_it_runs(tmp_path: Path) -> None:
    """The intake writer must get the GIL back soon after each database call (hub.api.app);
    the process's own interval is restored when the app stops."""
    import sys

    settings = Settings(data_dir=tmp_path, clients_file=tmp_path / "clients.toml",
                        switch_interval=0.001)
    settings.clients_file.write_text("")
    generate(settings.hub_id).save(settings.keys_dir)
    store = Store.open(f"sqlite:///{tmp_path / 'hub.db'}")
    before = sys.getswitchinterval()
    assert before != pytest.approx(0.001)
    with TestClient(create_app(settings, store=store, relay=False, soap=False)) as http:
        assert http.get("/healthz").status_code == 200
        assert sys.getswitchinterval() == pytest.approx(0.001)
    assert sys.getswitchinterval() == pytest.approx(before)
    store.close()


@pytest.mark.parametrize("url", ["lienthong.example.gov.vn", "ftp://hub.example.vn",
                                 "https://", "https://hub.example.vn/?x=1"])
def test_a_public_url_must_be_an_http_base_url(url: str) -> None:
    with pytest.raises(ValidationError, match="public_url") as info:
        Settings(public_url=url)
    assert "e.g. https://lienthong.example.gov.vn" in str(info.value)


def test_the_public_url_is_kept_without_its_trailing_slash() -> None:
    assert Settings(public_url=" https://hub.example.vn/lt/ ").public_url == (
        "https://hub.example.vn/lt")
