"""The model servers a serving worker runs, one class per backend with the same interface: the command that starts
it (None: no process, it already runs), its environment, the URL of its health check, its OpenAI-compatible base URL
and the model name it is asked for.

``transformers`` serves a full or merged model on CPU or GPU; ``vllm`` and ``tgi`` (CUDA pools only) load a LoRA
adapter on its base themselves; ``external`` is a server that already runs elsewhere.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmops_deployment.artifacts import ModelFiles
from llmops_deployment.settings import DeploymentSettings
from llmops_schemas.events.deployments import ExternalEndpoint


@dataclass(frozen=True)
class Backend:
    """A backend kind: ``gpu`` ones run on CUDA pools only; ``merges`` ones need an adapter merged into its base."""

    name: str = ""
    gpu: bool = False
    merges: bool = False
    extra_args: tuple[str, ...] = ()

    def command(self, files: ModelFiles, host: str, port: int) -> list[str] | None:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """What the backend process gets on top of the worker's environment."""
        return {}

    def endpoint(self, host: str, port: int) -> str:
        """The OpenAI-compatible base URL (``/chat/completions`` is appended to it)."""
        return f"http://{host}:{port}/v1"

    def health_url(self, host: str, port: int) -> str:
        return f"http://{host}:{port}/health"

    def served_model(self, files: ModelFiles) -> str:
        return files.adapter_name or str(files.model_dir)

    def api_key(self) -> str | None:
        return None


@dataclass(frozen=True)
class Transformers(Backend):
    """``transformers serve`` with the model preloaded (it then answers to the model's path only)."""

    name: str = "transformers"
    merges: bool = True
    threads: int = 0

    def command(self, files: ModelFiles, host: str, port: int) -> list[str]:
        script = Path(sys.executable).with_name("transformers")
        launcher = [str(script)] if script.exists() else [sys.executable, "-m", "transformers"]
        return [
            *launcher,
            "serve",
            str(files.model_dir),
            "--host",
            host,
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "info",
            *self.extra_args,
        ]

    def env(self) -> dict[str, str]:
        # Offline in the child only: set in the worker it would also stop the hub client's calls to local servers.
        env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        if self.threads:
            env |= {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        return env

    def served_model(self, files: ModelFiles) -> str:
        return str(files.model_dir)


@dataclass(frozen=True)
class Vllm(Backend):
    """``vllm serve`` on the base model, with the adapter as a LoRA module named after the model version."""

    name: str = "vllm"
    gpu: bool = True

    def command(self, files: ModelFiles, host: str, port: int) -> list[str]:
        command = ["vllm", "serve", str(files.model_dir), "--host", host, "--port", str(port)]
        if files.adapter_dir is not None:
            command += ["--enable-lora", "--lora-modules", f"{files.adapter_name}={files.adapter_dir}"]
            if files.lora_rank:
                command += ["--max-lora-rank", str(files.lora_rank)]
        return [*command, *self.extra_args]


@dataclass(frozen=True)
class Tgi(Backend):
    """Text Generation Inference's launcher, with the adapter as a LoRA adapter named after the model version."""

    name: str = "tgi"
    gpu: bool = True

    def command(self, files: ModelFiles, host: str, port: int) -> list[str]:
        command = ["text-generation-launcher", "--model-id", str(files.model_dir), "--hostname", host]
        command += ["--port", str(port)]
        if files.adapter_dir is not None:
            command += ["--lora-adapters", f"{files.adapter_name}={files.adapter_dir}"]
        return [*command, *self.extra_args]

    def served_model(self, files: ModelFiles) -> str:
        return files.adapter_name or "tgi"  # TGI answers to any name for its base model


@dataclass(frozen=True)
class External(Backend):
    """A server that already runs: nothing to start; its key from the environment variable ``secret_ref`` names."""

    name: str = "external"
    target: ExternalEndpoint | None = field(default=None)

    def command(self, files: ModelFiles, host: str, port: int) -> None:
        return None

    def endpoint(self, host: str, port: int) -> str:
        assert self.target is not None
        return self.target.url.rstrip("/")

    def health_url(self, host: str, port: int) -> str:
        return f"{self.endpoint(host, port)}/models"

    def served_model(self, files: ModelFiles) -> str:
        assert self.target is not None
        return self.target.model

    def api_key(self) -> str | None:
        if self.target is None or self.target.secret_ref is None:
            return None
        return os.environ.get(self.target.secret_ref)


def backend_for(name: str, settings: DeploymentSettings, external: ExternalEndpoint | None = None) -> Backend:
    """The backend ``name`` with the settings' extra arguments; ValueError for an unknown one."""
    extra = tuple(settings.backend_args.get(name, ()))
    if name == "transformers":
        return Transformers(extra_args=extra, threads=settings.threads)
    if name == "vllm":
        return Vllm(extra_args=extra)
    if name == "tgi":
        return Tgi(extra_args=extra)
    if name == "external":
        if external is None:
            raise ValueError("an external deployment names no endpoint")
        return External(target=external)
    raise ValueError(f"unknown backend {name!r}")
