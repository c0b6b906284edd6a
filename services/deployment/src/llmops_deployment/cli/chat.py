"""``llmops chat``."""

from __future__ import annotations

import typer

chat_app = typer.Typer(help="(being built)", no_args_is_help=True)
