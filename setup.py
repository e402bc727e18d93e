"""Packaging hook: pyproject.toml holds the metadata; this only puts the contracts and maps in
the wheel.

``schemas/`` and ``mappings/`` are top-level directories of the repository (contracts live in
one place, maps in another, beside the code that reads them), not Python packages. A wheel
carries them as ``hub/_data/schemas`` and ``hub/_data/mappings``, where ``hub.settings`` looks
for them when the hub is not run from a checkout. An editable install (``pip install -e .``)
copies nothing: the hub then reads the checkout's own directories.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA_DIRS = ("schemas", "mappings")


def _data_files(name: str) -> list[Path]:
    source = ROOT / name
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if not files:
        # A wheel without its contracts installs fine and fails on first use: refuse it here.
        raise SystemExit(
            f"setup.py: {source} is missing or empty; build from a checkout or from the sdist "
            "(MANIFEST.in grafts schemas/ and mappings/)"
        )
    return files


class BuildWithData(build_py):
    """build_py that also copies schemas/ and mappings/ to hub/_data/ in the build tree."""

    def _data_targets(self) -> list[tuple[Path, Path]]:
        if self.editable_mode:
            return []
        return [
            (path, Path(self.build_lib) / "hub" / "_data" / name / path.relative_to(ROOT / name))
            for name in DATA_DIRS
            for path in _data_files(name)
        ]

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            # An in-tree build reuses build/lib: a file since removed from the checkout must not
            # ship from an earlier build.
            shutil.rmtree(Path(self.build_lib) / "hub" / "_data", ignore_errors=True)
        for source, target in self._data_targets():
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode),
                *(str(target) for _, target in self._data_targets())]


setup(cmdclass={"build_py": BuildWithData})
