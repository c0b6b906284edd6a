"""What the training commands share: their options and choices, and the client of the training service."""

from __future__ import annotations

from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Annotated

import httpx
import typer

from llmops import client as llmops_client
from llmops.client import TIMEOUT, url_option

TERMINAL = ("completed", "failed", "cancelled")

Url = url_option("training")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
ModelName = Annotated[str, typer.Argument(help="the registered model's name")]
JobId = Annotated[str, typer.Argument(help="the job's id (as `llmops train start` or `llmops train list` print it)")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="follow until the job ends")]
Interval = Annotated[float, typer.Option("--interval", help="seconds between polls when following", min=0.1)]


class Method(StrEnum):
    LORA = "lora"
    FULL = "full"
    QLORA = "qlora"


class Split(StrEnum):
    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# -- HTTP (the plumbing is llmops.client's) ----------------------------------------------------------------------
def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the training service; a missing token or an unreachable service ends the command."""
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("training", url, token, timeout=timeout, issue_hint=hint)


check = llmops_client.check
