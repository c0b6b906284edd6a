"""schemathesis, with all its checks, against each service over HTTP: no server error, no undocumented status code
or content type, no schema-violating request accepted, no created resource that cannot be found.

``LLMOPS_FUZZ_EXAMPLES`` (default: the config's 30 per operation) and ``LLMOPS_FUZZ_SEED`` (default fixed, so that
CI is reproducible; set it to explore) bound and vary the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.auth import Role, issue_token
from llmops.tokens import ALL_PROJECTS

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "service", ["audit", "datasets", "prompts", "training", "evaluation", "deployment", "monitoring"]
)
def test_every_route_keeps_its_contract(serve, service, tmp_path):
    token = issue_token("fuzz-admin", [Role.ADMIN], [ALL_PROJECTS])
    with serve(service) as url:
        command = [
            str(ST),
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--seed",
            os.environ.get("LLMOPS_FUZZ_SEED", "20261130"),
            "--no-color",
        ]
        if examples := os.environ.get("LLMOPS_FUZZ_EXAMPLES"):
            command += ["--max-examples", examples]
        env = {**os.environ, "PYTHONPATH": str(CONFIG.parent)}
        run = subprocess.run(command, capture_output=True, text=True, timeout=840, cwd=tmp_path, env=env)
    assert run.returncode == 0, f"schemathesis found problems in the {service} API:\n{run.stdout[-20000:]}{run.stderr}"
