"""What exists only for tests, the demo and the benchmarks is kept apart from what a deployment
runs: no module of the hub or of an adapter imports ``hub.testing`` or a helper of the test
suite, so a server or a worker in production loads none of it."""

from __future__ import annotations

import ast
from pathlib import Path

from hub.settings import PROJECT_ROOT


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
    return found


def _deployed_modules() -> list[Path]:
    roots = [PROJECT_ROOT / "hub", PROJECT_ROOT / "adapters"]
    testing = PROJECT_ROOT / "hub" / "testing"
    return [p for root in roots for p in sorted(root.rglob("*.py"))
            if testing not in p.parents and "_data" not in p.parts]


def test_no_deployed_module_imports_test_code() -> None:
    modules = _deployed_modules()
    assert len(modules) > 50, "the walk found too few modules to mean anything"
    # The suite's helpers are top-level modules of tests/ (payment_support, cluster...).
    test_only = {p.stem for p in (PROJECT_ROOT / "tests").glob("*.py")} | {"tests"}
    offending = [
        f"{path.relative_to(PROJECT_ROOT)} imports {name}"
        for path in modules
        for name in _imports(path)
        if name == "hub.testing" or name.startswith("hub.testing.")
        or name.split(".")[0] in test_only
    ]
    assert offending == []


def test_test_code_is_named_so() -> None:
    """No module meant for tests hides among the deployed ones under another name."""
    names = [p.relative_to(PROJECT_ROOT).as_posix() for p in _deployed_modules()]
    assert [n for n in names if "testing" in n or n.endswith(("_support.py", "fakes.py"))] == []
