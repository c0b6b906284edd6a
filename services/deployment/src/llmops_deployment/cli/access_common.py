"""What the routes and keys commands share: their options and the client of the deployment service."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

import httpx
import typer

from llmops import client as llmops_client
from llmops.client import TIMEOUT, url_option

Url = url_option("deployment")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="why (kept in the history and the event)")]


def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    """An HTTP client for the deployment service; a missing token or an unreachable service ends the command."""
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("deployment", url, token, timeout=timeout, issue_hint=hint)


check = llmops_client.check
