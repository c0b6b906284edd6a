"""The import rules of docs/architecture.md, as import-linter contracts (``[tool.importlinter]`` in pyproject.toml):
they are kept, and each breaks when a module breaks its rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(*, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:  # a package found there first shadows the installed one of the same name
        env["PYTHONPATH"] = f"{pythonpath}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("package", "module", "line", "broken"),
    [
        ("prompts", "service", "from fastapi import Request", "know nothing of HTTP"),
        ("datasets", "queries", "from llmops.http import Session", "know nothing of HTTP"),
        ("training", "repository", "from llmops.auth import requires", "know nothing of HTTP"),  # FastAPI underneath
        ("training", "api", "from llmops_datasets import service", "no service imports another"),
        ("training", "worker", "from llmops.http import Session", "Workers know nothing of HTTP"),
    ],
)
def test_a_module_breaking_a_rule_breaks_its_contract(tmp_path, package, module, line, broken) -> None:
    copy = tmp_path / f"llmops_{package}"
    shutil.copytree(ROOT / "services" / package / "src" / f"llmops_{package}", copy)
    target = copy / f"{module}.py"
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(pythonpath=tmp_path)
    assert result.returncode != 0, result.stdout
    assert f"{broken}" in result.stdout.split("Broken contracts")[-1]


def test_the_libraries_importing_a_service_break_their_contract(tmp_path) -> None:
    copy = tmp_path / "llmops"
    shutil.copytree(ROOT / "libs" / "src" / "llmops", copy)
    (copy / "routes.py").write_text((copy / "routes.py").read_text() + "\nimport llmops_audit.app  # noqa\n")
    result = lint_imports(pythonpath=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "import no service" in result.stdout.split("Broken contracts")[-1]
