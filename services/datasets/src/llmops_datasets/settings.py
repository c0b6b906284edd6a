"""The datasets service's settings (prefix ``LLMOPS_DATASETS_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from llmops.settings import ServiceSettings


class DatasetsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_DATASETS_", extra="ignore")

    service: str = "datasets"
    #: Largest upload accepted (bytes); larger ones are refused with 413 before or while reading them.
    max_upload_bytes: int = Field(default=10 * 1024**3, ge=1)
    #: Where uploads are spooled while processed (None: the system temporary directory).
    spool_dir: Path | None = None
    #: Processes cleaning a JSONL upload while it arrives, block by block (1: a thread of the service process, line by
    #: line, also while it arrives). Worth it only with idle cores: on a 2-core host beside the object store the
    #: workers and their merge cost more CPU than they save (measured: 0.35-0.41 of a plain upload's rate with 2,
    #: 0.35-0.38 with 1), and each holds ~65 MB.
    ingest_workers: int = Field(default=1, ge=1)
    preview_max_rows: int = Field(default=100, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8001
