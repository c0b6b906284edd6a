"""Structured logs: JSON off a terminal, dotted event names with context, correlation ids bound per request/event."""

from __future__ import annotations

import json

from llmops.logging import bound_context, configure_logging, get_logger


class TestStructuredLogs:
    def test_off_a_terminal_each_line_is_json_with_the_event_and_its_context(self, capsys):
        configure_logging("INFO", json=True)
        get_logger("tests").info("dataset.version.stored", sha256="ab" * 32, rows=3)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["event"] == "dataset.version.stored"
        assert (line["sha256"], line["rows"], line["level"]) == ("ab" * 32, 3, "info")
        assert "timestamp" in line

    def test_the_correlation_id_is_on_every_line_inside_its_context_and_gone_after(self, capsys):
        configure_logging("INFO", json=True)
        log = get_logger("tests")
        with bound_context(correlation_id="corr-1", request_id="req-1"):
            log.info("inside.first")
            log.info("inside.second")
        log.info("outside")
        lines = [json.loads(x) for x in capsys.readouterr().err.strip().splitlines()[-3:]]
        assert [x.get("correlation_id") for x in lines] == ["corr-1", "corr-1", None]
        assert lines[0]["request_id"] == "req-1"

    def test_lines_below_the_level_are_dropped(self, capsys):
        configure_logging("WARNING", json=True)
        get_logger("tests").info("too.quiet")
        assert "too.quiet" not in capsys.readouterr().err
