"""docs/architecture.md matches the code: every module its layer table names exists in every service."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("audit", "datasets", "prompts", "training", "evaluation", "deployment", "monitoring")


def layer_modules() -> list[str]:
    """The modules in the first column of the page's layer table."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    return re.findall(r"^\| `(\w+\.py)` \|", page, flags=re.M)


def test_the_layer_table_names_the_layers() -> None:
    assert {"api.py", "service.py", "repository.py", "queries.py", "consumers.py"} <= set(layer_modules())


def test_every_service_has_every_layer_of_the_page() -> None:
    missing = [
        f"{service}/{module}"
        for service in SERVICES
        for module in layer_modules()
        if not (ROOT / "services" / service / "src" / f"llmops_{service}" / module).is_file()
    ]
    assert missing == []


def test_the_readme_links_the_page() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
