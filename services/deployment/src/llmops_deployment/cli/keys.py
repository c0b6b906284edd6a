"""``llmops keys``."""

from __future__ import annotations

import typer

keys_app = typer.Typer(help="(being built)", no_args_is_help=True)
