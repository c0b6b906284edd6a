"""``llmops eval ...``: suites, runs, comparisons, gates, overrides and feedback from the command line."""

from __future__ import annotations

import typer

eval_app = typer.Typer(
    help="Evaluate model versions: suites, runs, comparisons, gates, feedback.", no_args_is_help=True
)
