"""`llmops audit ...`: query, trace, export and verify the audit log (through the service's API), and verify an
export offline."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="The audit log: query, history, export, verify; verify-export works offline.", no_args_is_help=True
)
