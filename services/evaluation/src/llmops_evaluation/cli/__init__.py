"""``llmops eval ...``: suites, runs, comparisons, gates, overrides and feedback from the command line."""

from __future__ import annotations

import typer

from llmops_evaluation.cli.feedback import feedback_app

eval_app = typer.Typer(
    help="Evaluate model versions: suites, runs, comparisons, gates, feedback.", no_args_is_help=True
)
eval_app.add_typer(feedback_app, name="feedback")
