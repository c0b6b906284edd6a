"""Benchmark: renders per second of a typical chat template through the prompts client's local renderer (sandboxed
Jinja2, strict undefined, every variable checked against its JSON Schema) beside plain Jinja2 rendering of the same
template (a precompiled ``jinja2.Environment`` template, no checks), in one run. Target ratio: at least 0.8.
Usage: python tests/bench/bench_prompts.py [--renders N]
"""

from __future__ import annotations

import argparse
import time

from jinja2 import Environment

from llmops.prompts import PromptTemplate, render

SYSTEM = (
    "You are the support assistant of {{ company }}. Answer in {{ language }}, in at most {{ max_sentences }} "
    "sentences, politely and precisely.{% if tone %} Keep a {{ tone }} tone.{% endif %}"
)
CONTEXT = (
    "Customer: {{ customer_name }} (plan: {{ plan }}).\nRecent orders:\n{% for o in orders %}- {{ o }}\n{% endfor %}"
)
USER = "{{ question }}"

TEMPLATE = PromptTemplate(
    kind="chat",
    messages=[
        {"role": "system", "content": SYSTEM},
        {"role": "system", "content": CONTEXT},
        {"role": "user", "content": USER},
    ],
    variables={
        "company": {"type": "string"},
        "language": {"type": "string", "enum": ["English", "German", "French"]},
        "max_sentences": {"type": "integer", "minimum": 1, "maximum": 10},
        "tone": {"type": "string"},
        "customer_name": {"type": "string", "maxLength": 200},
        "plan": {"type": "string"},
        "orders": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "question": {"type": "string", "maxLength": 4000},
    },
)
VARIABLES = {
    "company": "ACME Robotics",
    "language": "English",
    "max_sentences": 4,
    "tone": "friendly",
    "customer_name": "Jane Doe",
    "plan": "business",
    "orders": ["#1042 vacuum robot, shipped", "#1057 spare brushes, processing"],
    "question": "My robot stopped charging after the last update. What should I do?",
}


def rate(fn, n: int) -> float:
    for _ in range(min(n, 1000)):  # warm caches
        fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def main(n: int) -> None:
    plain_env = Environment(autoescape=False, keep_trailing_newline=True)  # noqa: S701 (prompts are not HTML)
    compiled = [(m.role, plain_env.from_string(m.content)) for m in TEMPLATE.messages]

    def plain():
        return [{"role": role, "content": t.render(VARIABLES)} for role, t in compiled]

    def platform():
        return render(TEMPLATE, VARIABLES)

    assert plain() == platform()
    plain_rate, platform_rate = rate(plain, n), rate(platform, n)
    print(f"renders: {n} of a 3-message chat template with 8 variables")
    print(f"plain Jinja2:                              {plain_rate:9.0f} renders/s")
    print(f"platform renderer (sandbox, schema checks): {platform_rate:9.0f} renders/s")
    print(f"ratio platform/plain: {platform_rate / plain_rate:.2f}  (target >= 0.8)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--renders", type=int, default=20_000)
    main(parser.parse_args().renders)
