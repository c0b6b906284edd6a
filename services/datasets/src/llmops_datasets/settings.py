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
    #: store (``make bench-datasets``): 2 workers ingest at 0.53-0.55 of a plain upload's rate, the thread at 0.35-0.44.
    ingest_workers: int = Field(default=2, ge=0)
    #: glibc malloc tuning (see :mod:`llmops.memory`): the arenas the service's threads share, and the size from
    #: which buffers are mapped apart (0 leaves either to the C library). Measured on a 1 GB upload: the service and
    #: its workers peak about 20 MB lower with 2 arenas than with the default; a 1 MiB mapping size takes another
    #: 25 MB off but costs about a tenth of the ingest rate (each part buffer is faulted in anew), so it is off.
    malloc_arenas: int = Field(default=2, ge=0)
    malloc_mmap_threshold: int = Field(default=0, ge=0, le=32 * 1024 * 1024)
    preview_max_rows: int = Field(default=100, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8001
