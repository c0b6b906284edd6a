"""Secrets safe by default: a service started without LLMOPS_ENV=local refuses the repository's development secrets
and short secrets, naming the setting, before it touches anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SERVICES = ["audit", "datasets", "prompts", "training"]


def start(service: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    return subprocess.run(
        [str(BIN / f"llmops-{service}"), "serve"], env=clean | env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_without_llmops_env_local_refuses_the_development_secrets(service: str) -> None:
    result = start(service)
    assert result.returncode == 2, result.stderr
    assert f"llmops-{service}: refusing to start" in result.stderr
    assert "is the development default, accepted only with LLMOPS_ENV=local" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_short_secret_is_refused_naming_the_setting() -> None:
    long = "s" * 40
    result = start(
        "prompts",
        LLMOPS_POSTGRES_SERVICE_PASSWORD=long,
        LLMOPS_POSTGRES_SUPERUSER_PASSWORD=long,
        LLMOPS_S3_SECRET_KEY=long,
        LLMOPS_AUTH_JWT_SECRET="only-twenty-six-bytes-long",
    )
    assert result.returncode == 2, result.stderr
    assert "LLMOPS_AUTH_JWT_SECRET is shorter than 32 bytes" in result.stderr
