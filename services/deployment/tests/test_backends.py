"""The backends' command lines, environments, health URLs, endpoints and served model names (vllm and tgi are not
installed here: their command lines are what is checked)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops_deployment.artifacts import ModelFiles
from llmops_deployment.backends import External, Tgi, Transformers, Vllm, backend_for
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas.events.deployments import ExternalEndpoint

FULL = ModelFiles(Path("/cache/full"), "a" * 64)
ADAPTER = ModelFiles(Path("/cache/base"), "b" * 64, Path("/cache/adapter"), "support-bot-v3", 16)


def settings(**changes) -> DeploymentSettings:
    return DeploymentSettings.model_construct(**{**DeploymentSettings.model_construct().__dict__, **changes})


class TestTransformers:
    def test_preloads_the_model_on_cpu_at_the_host_and_port(self):
        command = Transformers(extra_args=("--dtype", "float32")).command(FULL, "127.0.0.1", 8123)
        assert command[-12:] == [
            "serve",
            "/cache/full",
            "--host",
            "127.0.0.1",
            "--port",
            "8123",
            "--device",
            "cpu",
            "--log-level",
            "info",
            "--dtype",
            "float32",
        ]
        assert Path(command[0]).name in ("transformers", "python", "python3") or command[1:3] == ["-m", "transformers"]

    def test_runs_offline_with_the_settings_threads_and_answers_to_the_models_path(self):
        backend = Transformers(threads=2)
        assert backend.env()["HF_HUB_OFFLINE"] == "1" and backend.env()["OMP_NUM_THREADS"] == "2"
        assert "OMP_NUM_THREADS" not in Transformers().env()
        assert backend.served_model(FULL) == "/cache/full" and backend.merges and not backend.gpu
        assert backend.endpoint("10.0.0.5", 8123) == "http://10.0.0.5:8123/v1"
        assert backend.health_url("127.0.0.1", 8123) == "http://127.0.0.1:8123/health"


class TestVllm:
    def test_serves_the_base_with_the_adapter_as_a_lora_module(self):
        command = Vllm(extra_args=("--max-model-len", "4096")).command(ADAPTER, "10.0.0.7", 9000)
        assert command == [
            "vllm",
            "serve",
            "/cache/base",
            "--host",
            "10.0.0.7",
            "--port",
            "9000",
            "--enable-lora",
            "--lora-modules",
            "support-bot-v3=/cache/adapter",
            "--max-lora-rank",
            "16",
            "--max-model-len",
            "4096",
        ]
        assert Vllm().served_model(ADAPTER) == "support-bot-v3" and Vllm().gpu and not Vllm().merges

    def test_serves_a_full_model_under_its_path(self):
        assert Vllm().command(FULL, "h", 1) == ["vllm", "serve", "/cache/full", "--host", "h", "--port", "1"]
        assert Vllm().served_model(FULL) == "/cache/full"


class TestTgi:
    def test_launches_the_base_with_the_adapter(self):
        command = Tgi().command(ADAPTER, "10.0.0.7", 9000)
        assert command == [
            "text-generation-launcher",
            "--model-id",
            "/cache/base",
            "--hostname",
            "10.0.0.7",
            "--port",
            "9000",
            "--lora-adapters",
            "support-bot-v3=/cache/adapter",
        ]
        assert Tgi().served_model(ADAPTER) == "support-bot-v3" and Tgi().served_model(FULL) == "tgi"
        assert Tgi().health_url("h", 9000) == "http://h:9000/health"


class TestExternal:
    def test_has_no_process_and_its_key_from_the_named_variable(self, monkeypatch):
        monkeypatch.setenv("PARTNER_KEY", "sk-1")
        backend = External(
            target=ExternalEndpoint(url="https://llm.example/v1/", model="gpt-x", secret_ref="PARTNER_KEY")
        )
        assert backend.command(FULL, "h", 0) is None
        assert backend.endpoint("h", 0) == "https://llm.example/v1"
        assert backend.health_url("h", 0) == "https://llm.example/v1/models"
        assert backend.served_model(FULL) == "gpt-x" and backend.api_key() == "sk-1"

    def test_without_a_secret_sends_no_key(self):
        assert External(target=ExternalEndpoint(url="http://x/v1", model="m")).api_key() is None


class TestBackendFor:
    def test_passes_the_settings_extra_arguments(self):
        backend = backend_for("vllm", settings(backend_args={"vllm": ["--max-model-len", "2048"]}))
        assert isinstance(backend, Vllm) and backend.extra_args == ("--max-model-len", "2048")

    def test_refuses_an_unknown_backend_and_an_external_one_without_endpoint(self):
        with pytest.raises(ValueError, match="unknown backend"):
            backend_for("llamacpp", settings())
        with pytest.raises(ValueError, match="no endpoint"):
            backend_for("external", settings())
