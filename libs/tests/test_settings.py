import pytest
from pydantic import ValidationError

from llmops.settings import AuthSettings, PostgresSettings, S3Settings, ServiceSettings


class TestDevelopmentSecrets:
    @pytest.mark.parametrize("settings", [AuthSettings, S3Settings, PostgresSettings])
    def test_default_secrets_are_refused_in_production(self, monkeypatch, settings):
        monkeypatch.setenv("LLMOPS_ENV", "production")
        with pytest.raises(ValidationError, match="development default"):
            settings()

    @pytest.mark.parametrize("settings", [AuthSettings, S3Settings, PostgresSettings])
    def test_unset_means_production_rules(self, monkeypatch, settings):
        monkeypatch.delenv("LLMOPS_ENV", raising=False)
        with pytest.raises(ValidationError, match="accepted only with LLMOPS_ENV=local"):
            settings()

    def test_real_secrets_are_accepted_in_production(self, monkeypatch):
        monkeypatch.setenv("LLMOPS_ENV", "production")
        monkeypatch.setenv("LLMOPS_AUTH_JWT_SECRET", "a-real-secret-from-the-vault-of-32+bytes")
        assert AuthSettings().jwt_secret.get_secret_value() == "a-real-secret-from-the-vault-of-32+bytes"

    def test_a_secret_shorter_than_32_bytes_is_refused_outside_local_development(self, monkeypatch):
        monkeypatch.delenv("LLMOPS_ENV", raising=False)
        monkeypatch.setenv("LLMOPS_AUTH_JWT_SECRET", "short-but-not-the-default")
        with pytest.raises(ValidationError, match="LLMOPS_AUTH_JWT_SECRET is shorter than 32 bytes"):
            AuthSettings()

    def test_default_secrets_are_fine_when_local_is_said_explicitly(self, monkeypatch):
        monkeypatch.setenv("LLMOPS_ENV", "local")
        assert AuthSettings().algorithm == "HS256"


class TestServiceSettings:
    class AuditSettings(ServiceSettings):
        model_config = {"env_prefix": "LLMOPS_AUDIT_"}
        service: str = "audit"

    def test_a_service_reads_its_own_prefix_and_the_shared_ones(self, monkeypatch):
        monkeypatch.setenv("LLMOPS_AUDIT_OUTBOX_BATCH_SIZE", "42")
        monkeypatch.setenv("LLMOPS_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        settings = self.AuditSettings()
        assert settings.outbox_batch_size == 42
        assert settings.kafka.bootstrap_servers == "kafka:9092"

    def test_the_service_runs_as_its_app_role_and_migrates_as_the_owner(self, monkeypatch):
        monkeypatch.delenv("LLMOPS_AUDIT_DATABASE_URL", raising=False)
        settings = self.AuditSettings()
        assert settings.db_url.endswith("//llmops_audit_app:llmops-local-db-password@127.0.0.1:5433/llmops_audit")
        assert settings.migrations_db_url.endswith(
            "//llmops_audit:llmops-local-db-password@127.0.0.1:5433/llmops_audit"
        )
