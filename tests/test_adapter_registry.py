"""A new system is a new package: the toy adapter in tests/plugins is registered through a real
entry point (a dist-info written into a directory on sys.path, exactly what pip would leave)
and the core discovers it without any edit of hub/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.adapters import AdapterSpec, discover
from hub.errors import ConfigError

PLUGINS = Path(__file__).parent / "plugins"


def install_entry_point(site: Path, name: str, target: str) -> None:
    info = site / f"lienthong_{name}_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: lienthong-{name}-plugin\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[lienthong.adapters]\n{name} = {target}\n")


@pytest.fixture
def toy_installed(tmp_path: Path) -> Iterator[None]:
    install_entry_point(tmp_path, "toy", "lienthong_toy:adapter")
    sys.path[:0] = [str(tmp_path), str(PLUGINS)]
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(PLUGINS))
        sys.modules.pop("lienthong_toy", None)


def test_toy_adapter_is_discovered(toy_installed: None) -> None:
    found = discover()
    assert "toy" in found
    spec = found["toy"]
    assert isinstance(spec, AdapterSpec)
    assert list(spec.bindings) == ["dossier.submitted.#"]
    # The five shipped systems are found the same way.
    assert {"provincial", "npsp", "population", "payment", "postal"} <= set(found)


def test_entry_point_that_is_not_a_spec_is_refused(tmp_path: Path) -> None:
    install_entry_point(tmp_path, "broken", "json:loads")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="not an AdapterSpec"):
            discover()
    finally:
        sys.path.remove(str(tmp_path))
