"""schemathesis, with all its checks, against each service over HTTP: no server error, no undocumented status code
or content type, no schema-violating request accepted, no created resource that cannot be found.

``LLMOPS_FUZZ_EXAMPLES`` (default: the config's 30 per operation) and ``LLMOPS_FUZZ_SEED`` (default fixed, so that
CI is reproducible; set it to explore) bound and vary the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.auth import Role, issue_token
from llmops.testing import schemathesis
from llmops.tokens import ALL_PROJECTS

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "service", ["audit", "datasets", "prompts", "training", "evaluation", "deployment", "monitoring"]
)
def test_every_route_keeps_its_contract(serve, service, tmp_path):
    token = issue_token("fuzz-admin", [Role.ADMIN], [ALL_PROJECTS])
    with serve(service) as url:
        run = schemathesis(
            f"{url}/openapi.json", config=CONFIG, authorization=f"Bearer {token}", seed="20261130", cwd=tmp_path
        )
    assert run.returncode == 0, f"schemathesis found problems in the {service} API:\n{run.stdout[-20000:]}{run.stderr}"
