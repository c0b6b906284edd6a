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
    apps = {re.sub(r"(-gpu)?-(worker|gateway)$", "", name) for name in built}
    assert apps == service_dirs()


def test_every_service_directory_is_a_known_platform_service():
    assert service_dirs() <= set(SERVICES)


def test_gpu_workers_sit_behind_the_gpu_profile():
    for name, spec in COMPOSE["services"].items():
        if name.endswith("-worker") and "gpu" in name:
            assert "gpu" in spec.get("profiles", []), name


@pytest.mark.parametrize("settings", [KafkaSettings, PostgresSettings, S3Settings])
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


def published_ports():
    for name, spec in COMPOSE["services"].items():
        for port in spec.get("ports", []):
            yield name, str(port)


def test_every_port_is_published_on_the_loopback_address_only():
    ports = list(published_ports())
    assert ports
    for name, port in ports:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_no_secret_is_written_in_the_compose_file():
    from llmops.settings import DEV_SECRETS

    text = (ROOT / "docker-compose.yml").read_text()
    assert not [secret for secret in DEV_SECRETS if secret in text]
    for name, spec in COMPOSE["services"].items():
        environment = spec.get("environment") or {}
        for key, value in environment.items():
            if any(word in key for word in ("PASSWORD", "SECRET", "SIGNING_KEY")):
                assert str(value).startswith("${"), f"{name} sets {key} in the file instead of from .env"


def test_services_take_their_secrets_from_an_env_file_that_is_not_shipped():
    for name, spec in COMPOSE["services"].items():
        if "build" in spec:
            assert spec.get("env_file") == [".env"], name
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert not (ROOT / ".env").exists() or ".env" not in _tracked()
    example = (ROOT / ".env.example").read_text()
    for setting in (
        "LLMOPS_POSTGRES_SUPERUSER_PASSWORD",
        "LLMOPS_POSTGRES_SERVICE_PASSWORD",
        "LLMOPS_S3_SECRET_KEY",
        "LLMOPS_AUTH_JWT_SECRET",
        "LLMOPS_AUDIT_SIGNING_KEY",
    ):
        assert f"{setting}=" in example, setting


def _tracked() -> list[str]:
    import subprocess

    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_every_setting_of_the_env_example_is_read_by_the_settings():
    from llmops_audit.settings import AuditSettings

    known = {
        f"{cls.model_config['env_prefix']}{name}".upper()
        for cls in (KafkaSettings, PostgresSettings, S3Settings, AuthSettings, AuditSettings)
        for name in cls.model_fields
    } | {"LLMOPS_ENV"}
    lines = (ROOT / ".env.example").read_text().splitlines()
    names = [line.split("=")[0] for line in lines if line and not line.startswith("#")]
    assert names and set(names) <= known, set(names) - known
