"""Installable as a package: the wheel the standard build tool makes (``python -m build``: the
sdist, then the wheel from it), installed in a fresh virtual environment outside the checkout
without the test extras, imports every module, serves the OpenAPI document and the WSDL from
``lienthong serve`` on a socket and runs the demo, which starts every adapter and simulator.

Cost, warm: about 38 s of CPU (the build's two isolated environments, the install, the demo's
~15 s); 105 s of wall time with the machine's two cores loaded 5x. The production dependencies
are downloaded once into a wheelhouse cached under the temporary directory, keyed by the
wheel's own requirements, and installed from it with ``--no-index``; a cold run first resolves
and downloads them (~60 wheels) from the configured index: 15-40 s more.
"""

from __future__ import annotations

import contextlib
import email.parser
import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lxml import etree

from hub.api.openapi import contract_components
from hub.signing import generate
from hub.testing.processes import serving

ROOT = Path(__file__).resolve().parent.parent
HUB_ID = "VN:GOV:000.00.00.G22:lienthong"
CACHE = Path(tempfile.gettempdir()) / "lienthong-test-cache"

# Imported by every module walk; run only by alembic, inside its migration context.
NOT_IMPORTABLE_ALONE = {"hub.store.migrations.env"}

WALK = """
import importlib, importlib.util, json, pkgutil, sys
import adapters, demo, hub
from hub.adapters import discover
from hub.settings import PROJECT_ROOT, Settings

failed, files = {}, []
for package in (hub, adapters, demo):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name in SKIP:
            continue
        try:
            files.append(importlib.import_module(info.name).__file__)
        except Exception as exc:
            failed[info.name] = repr(exc)
test_tools = [name for name in ("pytest", "hypothesis", "schemathesis", "signxml")
              if importlib.util.find_spec(name) is not None]
settings = Settings()
print(json.dumps({
    "failed": failed, "files": files, "test_tools": test_tools,
    "adapters": sorted(discover()), "project_root": str(PROJECT_ROOT),
    "paths": [str(p) for p in (settings.schemas_dir, settings.mappings_dir,
                               settings.topology_file, settings.clients_file)],
}))
"""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    prefix: Path  # the virtual environment
    outside: Path  # a working directory outside the checkout

    @property
    def python(self) -> Path:
        return self.prefix / "bin" / "python"

    @property
    def lienthong(self) -> Path:
        return self.prefix / "bin" / "lienthong"

    @property
    def data(self) -> Path:
        """schemas/ and mappings/ as installed."""
        [site] = self.prefix.glob("lib/python*/site-packages")
        return site / "hub" / "_data"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points into the checkout or configures the hub."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LIENTHONG_", "PYTHON", "VIRTUAL_ENV", "PROMETHEUS_"))}
    return {**env, **extra}


def run(args: list[str | Path], cwd: Path, timeout: float,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} exited {done.returncode}:\n"
        f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def requirements(wheel: Path) -> list[str]:
    """The wheel's own requirements, without its extras (what `pip install wheel` brings)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(name).decode())
    return sorted(r for r in metadata.get_all("Requires-Dist", []) if "extra ==" not in r)


def wheelhouse(wheel: Path) -> Path:
    """Wheels of the production dependencies, downloaded once per set of requirements."""
    reqs = requirements(wheel)
    key = hashlib.sha256(json.dumps([sys.version_info[:2], sys.platform, reqs]).encode())
    house = CACHE / f"wheelhouse-{key.hexdigest()[:16]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "wheelhouse.lock").open("w") as lock:
        # Several test runs share the cache: one downloads, the others wait and reuse.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not house.is_dir():
            partial = Path(tempfile.mkdtemp(dir=CACHE, prefix="partial-"))
            (partial / "requirements.txt").write_text("\n".join(reqs) + "\n")
            run([sys.executable, "-m", "pip", "download", "-q", "--dest", partial,
                 "-r", partial / "requirements.txt"], cwd=partial, timeout=600)
            partial.rename(house)
    return house


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    dist = base / "dist"
    # The sdist, then the wheel from it (what `python -m build` does), so that MANIFEST.in is
    # checked too; PIP_* stay in the environment: the isolated build environments get
    # setuptools from the configured index.
    run([sys.executable, "-m", "build", "--outdir", dist, ROOT], cwd=base, timeout=300)
    [wheel] = dist.glob("lienthong_hub-*.whl")
    prefix = base / "venv"
    # No pip inside (ensurepip costs ~8 s): this interpreter's pip installs into it. Modules
    # are compiled when imported rather than all at install (a third of the install's time).
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(prefix)
    run([sys.executable, "-m", "pip", "--python", prefix / "bin" / "python", "install", "-q",
         "--no-compile", "--no-index", "--find-links", wheelhouse(wheel), wheel], cwd=base,
        timeout=600)
    outside = base / "work"
    outside.mkdir()
    return Installed(wheel, prefix, outside)


def test_wheel_carries_contracts_maps_migrations_and_demo(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as archive:
        names = set(archive.namelist())
    expected = {f"hub/_data/{p.relative_to(ROOT).as_posix()}"
                for top in ("schemas", "mappings") for p in (ROOT / top).rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert expected, "the checkout has no schemas/ or mappings/"
    assert expected <= names, sorted(expected - names)
    migrations = ROOT / "hub" / "store" / "migrations"
    assert {p.relative_to(ROOT).as_posix() for p in migrations.rglob("*")
            if p.is_file() and p.suffix in (".py", ".mako")} <= names
    assert {"demo/__init__.py", "demo/__main__.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "schemas/", "mappings/")) for n in names)


def test_installed_without_test_extras_imports_every_module(installed: Installed) -> None:
    script = f"SKIP = {sorted(NOT_IMPORTABLE_ALONE)!r}\n{WALK}"
    found = json.loads(run([installed.python, "-c", script], cwd=installed.outside,
                           timeout=120).stdout)
    assert found["failed"] == {}
    assert found["test_tools"] == [], "the production install must not need the test extras"
    site = str(installed.prefix.resolve())
    outside_venv = [f for f in found["files"] if not f.startswith(site)]
    assert len(found["files"]) > 100 and outside_venv == []
    assert found["adapters"] == ["npsp", "payment", "population", "postal", "provincial"]
    run([sys.executable, "-m", "pip", "--python", installed.python, "check"],
        cwd=installed.outside, timeout=120)
    data = installed.data.resolve()
    assert Path(found["project_root"]) == data
    for path in found["paths"]:
        assert Path(path).is_relative_to(data) and Path(path).exists(), path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lienthong_serve(installed: Installed,
                    env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """The installed `lienthong serve`, run from outside the source tree; its base URL."""
    port = free_port()
    return serving([str(installed.lienthong), "serve", "--port", str(port)], port,
                   timeout=60, cwd=installed.outside, env=env)


def test_installed_hub_serves_openapi_and_wsdl(installed: Installed, amqp_url: str,
                                               prefix: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = clean_env(LIENTHONG_DATA_DIR=str(data_dir), LIENTHONG_AMQP_URL=amqp_url,
                    LIENTHONG_NAME_PREFIX=prefix)
    # The hub's keys (JWS, and RSA for the SOAP entry point), as `lienthong keys generate`
    # writes them; made here, because each command of the installed hub costs a process start.
    generate(HUB_ID).save(data_dir / "keys")
    generate(f"{HUB_ID}-soap", "RS256").save(data_dir / "keys")
    with lienthong_serve(installed, env) as base, httpx.Client(base_url=base, timeout=10) as http:
        document = http.get("/openapi.json")
        assert document.status_code == 200
        spec = document.json()
        assert spec["info"]["title"] == "Liên Thông Hub"
        assert "/v1/dossiers" in spec["paths"]
        # The body schemas come from the contract files, which only the wheel's data holds.
        contracts = contract_components(installed.data / "schemas" / "api")
        served = spec["components"]["schemas"]
        assert contracts and {n: served.get(n) for n in contracts} == contracts
        wsdl = http.get("/soap/v1", params={"wsdl": ""})
        assert wsdl.status_code == 200, wsdl.text
        shipped = etree.parse(ROOT / "schemas" / "soap" / "intake.wsdl").getroot()
        root = etree.fromstring(wsdl.content)
        assert root.tag == "{http://schemas.xmlsoap.org/wsdl/}definitions"
        assert root.get("targetNamespace") == shipped.get("targetNamespace")
        assert root.xpath("//soap12:address/@location", namespaces={
            "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/"})[0].endswith("/soap/v1")
        xsd = http.get("/soap/v1", params={"xsd": "intake.xsd"})
        assert xsd.status_code == 200
        schema = etree.parse(ROOT / "schemas" / "soap" / "intake.xsd").getroot()
        assert etree.fromstring(xsd.content).get("targetNamespace") \
            == schema.get("targetNamespace")


def test_installed_hub_runs_the_demo(installed: Installed, amqp_url: str, tmp_path: Path) -> None:
    env = clean_env(LIENTHONG_AMQP_URL=amqp_url)
    out = run([installed.python, "-m", "demo", "--data-dir", tmp_path / "demo"],
              cwd=installed.outside, timeout=240, env=env).stdout
    for line in ("portal (DongBoHoSoMC) has", "(matched)", "SOAP 1.2 ReportProgress accepted",
                 "payment completed (checksum verified)", "postal order accepted on waybill",
                 "hash chain intact", "demo finished"):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert ".dead            0 message(s)" in out


def test_build_refuses_a_tree_without_its_maps(tmp_path: Path) -> None:
    """A source tree without mappings/ must not yield a wheel that installs and fails later."""
    src = tmp_path / "src"
    for name in ("hub", "adapters", "demo", "schemas"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
                           str(tmp_path / "lib")], cwd=src, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert f"{src / 'mappings'} is missing or empty" in done.stdout + done.stderr
