"""Export JSON Schema files for the envelope and every payload, so non-Python publishers can validate.

``python -m llmops_schemas.export DIR`` writes them; ``--check`` exits 1 when the files in DIR are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llmops_schemas.envelope import PAYLOADS, CloudEvent


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text for the envelope and each registered payload (current version)."""
    files = {"cloudevent.schema.json": CloudEvent.model_json_schema()}
    for event_type, model in sorted(PAYLOADS.items()):
        if not model.__module__.startswith("llmops_schemas."):
            continue  # payloads registered by tests or plugins are not platform contracts
        schema = model.model_json_schema()
        schema["x-event-type"] = event_type
        schema["x-topic"] = model.topic
        schema["x-schema-version"] = model.schema_version
        files[f"{event_type}.v{model.schema_version}.schema.json"] = schema
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in files.items()}


def stale_files(directory: Path) -> list[str]:
    """Names of the files missing, different, or no longer produced in ``directory``."""
    expected = render_schemas()
    present = {p.name for p in directory.glob("*.schema.json")}
    stale = [n for n, text in expected.items() if not (directory / n).is_file() or (directory / n).read_text() != text]
    return sorted(stale + [n for n in present - expected.keys()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.directory)
        for name in stale:
            print(f"stale: {name}", file=sys.stderr)
        return 1 if stale else 0
    args.directory.mkdir(parents=True, exist_ok=True)
    for old in args.directory.glob("*.schema.json"):
        old.unlink()
    for name, text in render_schemas().items():
        (args.directory / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
