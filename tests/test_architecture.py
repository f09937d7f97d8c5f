"""The rooms of docs/ARCHITECTURE.md, held by tests: who may import what, who commits."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = ("bot", "tg", "services", "infra", "models", "sandbox", "migrations")


def _modules(package: str) -> list[Path]:
    return sorted(
        path for path in (ROOT / package).rglob("*.py") if "__pycache__" not in path.parts
    )


def _imported(path: Path, *, at_import: bool = False) -> set[str]:
    """Top-level names of the modules `path` imports: anywhere in it, or with `at_import`
    only those imported when the module itself is (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in tree.body if at_import else ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _offenders(packages: tuple[str, ...], forbidden: str) -> list[str]:
    return [
        str(path.relative_to(ROOT))
        for package in packages
        for path in _modules(package)
        if forbidden in _imported(path)
    ]


def test_only_tg_imports_aiogram() -> None:
    """services, infra and models never import aiogram: a use case runs from the CLI, the
    worker or a test as it runs from a handler."""
    assert _offenders(("services", "infra", "models"), "aiogram") == []


def test_importing_every_service_loads_no_aiogram() -> None:
    """Not even through a dependency: every module of services/ (and what it pulls in)
    imported in a fresh interpreter leaves aiogram unloaded."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in _modules("services")
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiogram'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert len(modules) > 20
    assert done.stdout.strip() == "[]"


def test_routers_never_touch_sqlalchemy() -> None:
    """Handlers receive services' results: no SQLAlchemy import under tg/routers (the
    session they pass on is typed `services.Session`)."""
    assert _offenders(("tg/routers",), "sqlalchemy") == []


def test_routers_run_no_queries() -> None:
    """No ORM calls on the session in a router: it is handed to services unopened."""
    calls = {"get", "execute", "scalar", "scalars", "add", "delete", "flush", "commit"}
    found = []
    for path in _modules("tg/routers"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in calls
                and isinstance(node.value, ast.Name)
                and node.value.id == "session"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} session.{node.attr}")
    assert found == []


def test_one_transaction_owner() -> None:
    """The session middleware commits an update's work; only a service whose work must be
    durable before messages go out commits itself. Nothing else in the application does."""
    allowed = {ROOT / "tg/middlewares/db.py"}
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in APPLICATION
        if package != "services"
        for path in _modules(package)
        if path not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "commit()" in line
    ]
    assert found == []


def test_the_production_image_leaves_the_sandbox_out() -> None:
    """sandbox/ (emulator, web chat, demo data) is not copied into the image, and nothing
    the image runs imports it, except lazily inside `bansos-bot sandbox` and `demo`."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {line.split()[1] for line in dockerfile.splitlines() if line.startswith("COPY ")}
    assert {"bot", "tg", "services", "infra", "models", "migrations"} <= copied
    assert "sandbox" not in copied
    eager = [
        str(path.relative_to(ROOT))
        for package in ("bot", "tg", "services", "infra", "models")
        for path in _modules(package)
        if "sandbox" in _imported(path, at_import=True)
    ]
    assert eager == []
