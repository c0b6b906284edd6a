"""``llmops eval ...``: suites, runs (with a progress bar), comparisons, gates, overrides and feedback, all through the
evaluation service's HTTP API (``LLMOPS_CLIENT_EVALUATION_URL``, ``LLMOPS_CLIENT_TOKEN``)."""

from __future__ import annotations

import typer

from llmops_evaluation.cli.feedback import feedback_app
from llmops_evaluation.cli.runs import register
from llmops_evaluation.cli.suites import suites_app

eval_app = typer.Typer(
    help="Evaluate model versions: suites, runs, comparisons, gates, feedback.", no_args_is_help=True
)
eval_app.add_typer(suites_app, name="suites")
register(eval_app)
eval_app.add_typer(feedback_app, name="feedback")
