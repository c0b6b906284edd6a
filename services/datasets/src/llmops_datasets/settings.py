"""The datasets service's settings (prefix ``LLMOPS_DATASETS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    #: Processes cleaning JSONL uploads block by block as they arrive, shared by all uploads (about 40 MB each);
    #: 0 cleans in a thread of the service, bound to one core (slower: see ``make bench-datasets``).
    ingest_workers: int = Field(default=2, ge=0)
    #: glibc malloc tuning (see :mod:`llmops.memory`); 0 leaves it to the C library. 2 arenas lower the peak memory
    #: of an upload; a mapping threshold lowers it further but slows the ingest, so it is off.
    malloc_arenas: int = Field(default=2, ge=0)
    malloc_mmap_threshold: int = Field(default=0, ge=0, le=32 * 1024 * 1024)
    #: The consumer group of the imports consumer (``dataset.import.requested``), and where a new group starts.
    consumer_group: str = "datasets"
    consumer_offset_reset: Literal["earliest", "latest"] = "earliest"
    preview_max_rows: int = Field(default=100, ge=1)
    http_host: str = "127.0.0.1"
    http_port: int = 8001
