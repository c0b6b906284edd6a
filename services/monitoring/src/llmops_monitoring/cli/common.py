"""What the monitoring commands share: their options and the client of the monitoring service."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated

import httpx
import typer

from llmops import client as llmops_client
from llmops.client import TIMEOUT, url_option

Url = url_option("monitoring")
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="the project")]
Since = Annotated[
    str | None, typer.Option("--since", help="start of the range: ISO 8601 time, or 15m, 6h, 2d back from now")
]
Until = Annotated[str | None, typer.Option("--until", help="end of the range (default: now)")]
DeploymentOpt = Annotated[str | None, typer.Option("--deployment", "-d", help="one deployment's")]
check = llmops_client.check


def connect(
    url: str | None, token: str | None, *, timeout: httpx.Timeout = TIMEOUT
) -> AbstractContextManager[httpx.Client]:
    hint = "llmops token issue --role ml-engineer --project P"
    return llmops_client.connect("monitoring", url, token, timeout=timeout, issue_hint=hint)


def moment(value: str | None) -> str | None:
    """An ISO time as is; ``15m``, ``6h``, ``2d`` as that long before now (UTC)."""
    from datetime import UTC, datetime, timedelta

    if value is None:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if value[:-1].isdigit() and value[-1:] in units:
        return (datetime.now(UTC) - timedelta(**{units[value[-1]]: int(value[:-1])})).isoformat()
    return value


def number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)
