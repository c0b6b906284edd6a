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
    #: Worker processes cleaning JSONL uploads while they arrive, block by block, started with the service and shared
    #: by all uploads (each holds about 40 MB). 0 cleans each upload in a thread of the service process instead, line
    #: by line: bound to one core and to the service's interpreter lock. Measured on a 2-core host beside the object
    #: store (``make bench-datasets``): 2 workers ingest at about 0.5 of a plain upload's rate, the thread at 0.35-0.44.
    ingest_workers: int = Field(default=2, ge=0)
    #: glibc malloc arenas the service's threads share (see :mod:`llmops.memory`); 0 leaves the C library's default.
    #: Measured: a 1 GB upload peaks about 20 MB lower with 2 than with the default.
    malloc_arenas: int = Field(default=2, ge=0)
    preview_max_rows: int = Field(default=100, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8001
