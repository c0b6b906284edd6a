"""Structured logging with structlog: dotted event names and key-value context, JSON when not on a terminal.

The correlation id (and request id) of the request or event being handled is bound in contextvars, so every log
line written while handling it carries them.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any

import structlog

_configured = False


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once; ``json`` defaults to "stderr is not a terminal"."""
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    for noisy in ("aiokafka", "kafka", "faststream"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    _configured = True


def _stderr_logger(*args: Any) -> structlog.PrintLogger:
    # The stderr of the moment, not the one at configuration time (which a test's capture may have closed since).
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str | None = None, **context: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger with ``context`` bound (entrypoints call :func:`configure_logging` first)."""
    return structlog.get_logger(name, **context)


@contextmanager
def bound_context(**context: Any):
    """Bind ``context`` (correlation_id, request_id, event_id ...) to every log line inside the block."""
    tokens = structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
