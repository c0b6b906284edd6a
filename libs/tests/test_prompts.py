"""The shared renderer's edges: bounded renders, user JSON Schemas that stay local, user regexes in linear time."""

from __future__ import annotations

import resource
import time

import pytest
from pydantic import ValidationError

from llmops.prompt_sandbox import MAX_OUTPUT_CHARS
from llmops.prompts import Expectation, PromptTemplate, RenderError, failed_expectations, render


def text(source: str, **variables: dict) -> PromptTemplate:
    return PromptTemplate(kind="text", text=source, variables=variables)


def refused(source: str, **variables) -> str:
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(text(source, **{name: {} for name in variables}), variables)
    assert time.monotonic() - started < 1.5  # refused, not computed (the render budget is 1 s)
    return str(caught.value)


class TestRenderLimits:
    def test_a_gigabyte_string_is_refused_at_once_without_being_built(self):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        with pytest.raises(RenderError, match="render limit"):
            render(text("{{ 'x' * 10**9 }}"), {})
        assert time.monotonic() - started < 5
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing near 1 GB

    @pytest.mark.parametrize(
        "source",
        [
            "{{ 'x' * 10**7 }}",
            "{{ ['x'] * 10**7 }}",
            "{{ '%s' % 'x' * 10**7 }}",
            "{{ '%99999999s' % 1 }}",
            "{{ '%*s' % (10**8, 1) }}",
            "{{ 7 ** 10000000 }}",
            "{{ 'x'|center(10**8) }}",
            "{{ 'x'.ljust(10**8) }}",
            "{{ '{:>99999999}'.format(1) }}",
            "{{ ('x' * 1000).replace('', 'y' * 2000) }}",
            "{{ ('y' * 1000).join(['x'] * 10000) }}",
            "{% set a = 'x' * 500000 %}{{ a ~ a ~ a }}",
        ],
    )
    def test_operators_and_calls_that_build_huge_values_are_refused(self, source):
        assert "render limit" in refused(source)

    def test_a_range_over_the_sandbox_limit_is_a_render_error(self):
        assert "range of 1,000,000,000 items" in refused("{{ range(10**9) | list }}")

    def test_output_over_the_cap_is_refused(self):
        message = refused("{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}")
        assert f"{MAX_OUTPUT_CHARS:,} characters" in message

    def test_a_block_that_piles_up_output_is_refused(self):
        assert "render limit" in refused(
            "{% set s %}{% for i in range(10**5) %}{{ i }}-{{ i }}{% endfor %}{% endset %}"
        )

    def test_a_render_that_loops_past_its_time_limit_is_stopped(self):
        started = time.monotonic()
        with pytest.raises(RenderError, match=r"time limit|loops"):
            render(text("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"), {})
        assert time.monotonic() - started < 5  # stopped near its 1 s budget (the loops would take hours)

    def test_a_doubling_loop_is_stopped_before_it_grows(self):
        source = (
            "{% set ns = namespace(s='xx') %}{% for i in range(60) %}{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}"
        )
        assert "render limit" in refused(source)

    def test_an_error_raised_by_the_template_is_a_render_error(self):
        assert "ZeroDivisionError" in refused("{{ 1 / 0 }}")

    def test_ordinary_templates_render_as_before(self):
        source = (
            "{% macro m(x) %}[{{ x }}]{% endmacro %}{% set s %}{{ m(1) }}{% endset %}{{ s }}"
            "{% for o in items %}{{ loop.index }}{{ o|upper }}{% endfor %}{{ a ~ '!' }}{{ 2 ** 10 }}"
            "{{ '%s-%03d' % ('n', 7) }}{{ '{}:{}'.format('k', 'v') }}{{ 'ab' * 2 }}{{ ['x', 'y']|join(',') }}"
        )
        template = text(source, items={"type": "array"}, a={"type": "string"})
        assert render(template, {"items": ["p", "q"], "a": "A"}) == "[1]1P2QA!1024n-007k:vababx,y"


class TestSchemas:
    @pytest.mark.parametrize(
        "ref", ["file:///etc/passwd", "http://127.0.0.1:9/schema.json", "other.json#/x", "//host/x", "urn:x:y"]
    )
    def test_a_non_local_ref_anywhere_in_a_variable_schema_is_refused_naming_it(self, ref):
        schema = {"type": "object", "properties": {"a": {"items": [{"$ref": ref}]}}}
        with pytest.raises(ValidationError, match="is not local") as caught:
            text("{{ v }}", v=schema)
        assert ref in str(caught.value)

    def test_a_non_local_ref_in_an_expectation_schema_is_refused(self):
        with pytest.raises(ValidationError, match="is not local"):
            Expectation(json_schema={"anyOf": [{"$ref": "file:///etc/passwd"}]})

    def test_a_ref_made_remote_by_an_id_never_opens_a_url(self, monkeypatch):
        import urllib.request

        def no_network(*args, **kwargs):
            raise AssertionError("the schema opened a URL")

        monkeypatch.setattr(urllib.request, "urlopen", no_network)
        schema = {"$id": "http://127.0.0.1:9/root.json", "properties": {"a": {"$ref": "#/definitions/nowhere"}}}
        with pytest.raises(ValidationError):
            Expectation(json_schema=schema)

    def test_local_refs_work(self):
        schema = {"$defs": {"name": {"type": "string", "maxLength": 3}}, "$ref": "#/$defs/name"}
        template = text("{{ n }}", n=schema)
        assert render(template, {"n": "abc"}) == "abc"
        with pytest.raises(RenderError, match="n:"):
            render(template, {"n": "abcd"})

    def test_an_expectation_schema_over_the_cap_is_refused(self):
        with pytest.raises(ValidationError, match="over 10000 bytes"):
            Expectation(json_schema={"enum": ["x" * 100] * 200})

    def test_schema_patterns_run_in_linear_time_and_must_be_re2(self):
        template = text("{{ v }}", v={"type": "string", "pattern": "^(a+)+$"})
        started = time.monotonic()
        with pytest.raises(RenderError, match="pattern"):
            render(template, {"v": "a" * 10_000 + "!"})
        assert time.monotonic() - started < 5  # backtracking would take longer than the universe has
        with pytest.raises(ValidationError, match="RE2"):
            text("{{ v }}", v={"type": "string", "pattern": r"(a)\1"})


class TestRegexExpectations:
    def test_a_catastrophic_regex_on_a_long_text_is_answered_in_linear_time(self):
        started = time.monotonic()
        assert failed_expectations("a" * 10_000 + "!", Expectation(regex="(a+)+$")) == [
            "regex: '(a+)+$' does not match"
        ]
        assert time.monotonic() - started < 5  # backtracking would take longer than the universe has

    def test_a_regex_re2_cannot_run_is_refused_saying_so(self):
        with pytest.raises(ValidationError, match="RE2 syntax"):
            Expectation(regex=r"(a)\1")
        with pytest.raises(ValidationError, match="RE2 syntax"):
            Expectation(regex=r"(?=a)a")

    def test_regexes_search_as_before(self):
        assert failed_expectations("order #1042 shipped", Expectation(regex=r"#\d+ \w+$")) == []
