"""docker-compose.yml describes the same platform as the native set-up: same services, settings and databases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from llmops.settings import SERVICES, AuthSettings, KafkaSettings, PostgresSettings, S3Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
INFRASTRUCTURE = {"kafka", "seaweedfs", "postgres", "topics"}


def service_dirs() -> set[str]:
    return {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}


def test_the_infrastructure_is_described():
    assert COMPOSE["services"].keys() >= INFRASTRUCTURE


def test_every_service_in_services_has_a_compose_service_and_no_other():
    built = {name for name, spec in COMPOSE["services"].items() if "build" in spec} - INFRASTRUCTURE
    apps = {name.removesuffix("-worker") for name in built}
    assert apps == service_dirs()


def test_every_service_directory_is_a_known_platform_service():
    assert service_dirs() <= set(SERVICES)


def test_gpu_workers_sit_behind_the_gpu_profile():
    for name, spec in COMPOSE["services"].items():
        if name.endswith("-worker") and "gpu" in name:
            assert "gpu" in spec.get("profiles", []), name


@pytest.mark.parametrize("settings", [KafkaSettings, PostgresSettings, S3Settings, AuthSettings])
def test_the_environment_given_to_services_is_read_by_the_settings(monkeypatch, settings):
    env = COMPOSE["x-platform-env"]
    prefix = settings.model_config["env_prefix"]
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    ours = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    assert ours, f"compose sets nothing with {prefix}"
    loaded = settings().model_dump()
    for field, value in ours.items():
        assert field in loaded, f"{prefix}{field.upper()} is not a setting"
        actual = loaded[field]
        actual = actual.get_secret_value() if hasattr(actual, "get_secret_value") else actual
        assert str(actual) == str(value)


def test_compose_postgres_creates_one_database_per_service():
    script = (ROOT / "infra/postgres/init-databases.sh").read_text()
    listed = re.search(r"for service in ([a-z ]+); do", script).group(1).split()
    assert tuple(listed) == SERVICES
