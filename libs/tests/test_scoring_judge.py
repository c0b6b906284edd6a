"""The LLM judge (llmops.scoring.judge) against a real local HTTP server speaking OpenAI's chat completions."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from llmops.scoring import ExampleScore, build_scorer, parse_scorer_configs, score
from llmops.scoring.judge import JudgeScorer, read_score

RUBRIC = {
    "kind": "chat",
    "messages": [
        {"role": "system", "content": 'You are a strict judge. Reply with JSON: {"score": 1 to 5}.'},
        {"role": "user", "content": "Question: {{ input }}\nAnswer: {{ output }}\nReference: {{ reference }}"},
    ],
    "variables": {"input": {"type": "string"}, "output": {"type": "string"}, "reference": {"type": "string"}},
}
OUTPUTS = ["a good answer", "a poor answer", "another good answer"]
REFERENCES = ["the answer", "the answer", "the answer"]
INPUTS = ["q1", "q2", "q3"]


@dataclass
class JudgeServer:
    """A chat completions server whose answer to each request is ``answer(user message)`` (or an HTTP status)."""

    url: str = ""
    answer: Callable[[str], str | int] = lambda content: '{"score": 3}'
    requests: list[dict] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    state = JudgeServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            time.sleep(0.02)  # long enough for concurrent requests to overlap
            with state.lock:
                state.in_flight -= 1
            answer = state.answer(body["messages"][-1]["content"])
            if isinstance(answer, int):
                self._send(answer, {"error": "the model is down"})
                return
            message = {"role": "assistant", "content": answer}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            reply = {"id": "c1", "object": "chat.completion", "created": 0, "model": "judge-7b", "choices": [choice]}
            self._send(200, reply)

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def judge(server: JudgeServer, **options) -> JudgeScorer:
    config = {"type": "judge", "endpoint": server.url, "rubric": RUBRIC, "model": "judge-7b", **options}
    return build_scorer(parse_scorer_configs([config])[0])


def run(server: JudgeServer, **options):
    return score(judge(server, **options), OUTPUTS, REFERENCES, INPUTS)


class TestJudging:
    def test_json_answers_become_scores_with_the_answer_and_model_recorded(self, server):
        server.answer = lambda content: (
            'Sure.\n```json\n{"reasoning": "fine", "score": 5}\n```' if "good" in content else '{"score": 2}'
        )
        result = run(server)
        assert [e.values for e in result.examples] == [{"judge_score": 5.0}, {"judge_score": 2.0}, {"judge_score": 5.0}]
        assert result.examples[1].details == {"answer": '{"score": 2}', "model": "judge-7b"}
        assert result.corpus.values == {"judge_score": 4.0}
        assert (result.error_count, result.unparseable_count) == (0, 0)

    def test_the_request_is_the_rendered_rubric_with_the_options(self, server):
        run(server, max_tokens=64)
        request = next(r for r in server.requests if "q2" in r["body"]["messages"][1]["content"])
        assert request["path"] == "/v1/chat/completions"
        assert request["body"]["messages"] == [
            {"role": "system", "content": 'You are a strict judge. Reply with JSON: {"score": 1 to 5}.'},
            {"role": "user", "content": "Question: q2\nAnswer: a poor answer\nReference: the answer"},
        ]
        assert (request["body"]["model"], request["body"]["max_tokens"], request["body"]["temperature"]) == (
            "judge-7b",
            64,
            0.0,
        )

    def test_garbage_answers_are_unparseable_not_zero(self, server):
        server.answer = lambda content: "I think it is quite good, maybe four out of five."
        result = run(server)
        assert result.unparseable_count == len(OUTPUTS)
        assert result.error_count == 0
        assert all(e.values == {} and e.unparseable for e in result.examples)
        assert result.examples[0].error == "the answer holds no JSON object with 'score'"
        assert result.examples[0].details["answer"].startswith("I think")
        assert result.corpus.values == {"judge_score": None}

    def test_an_out_of_range_score_is_unparseable(self, server):
        server.answer = lambda content: '{"score": 9}' if "poor" in content else '{"score": 4}'
        result = run(server)
        assert result.unparseable_count == 1
        assert result.examples[1].error == "'score' 9 is outside [1, 5]"
        assert result.corpus.values == {"judge_score": 4.0}

    def test_a_server_error_is_each_examples_error_not_unparseable(self, server):
        server.answer = lambda content: 500
        result = run(server)
        assert (result.error_count, result.unparseable_count) == (len(OUTPUTS), 0)
        assert all("500" in e.error and not e.unparseable for e in result.examples)

    def test_at_most_concurrency_calls_run_at_once(self, server):
        outputs = [f"answer {i}" for i in range(12)]
        score(judge(server, concurrency=2), outputs, ["r"] * 12, ["q"] * 12)
        assert len(server.requests) == 12
        assert server.most_in_flight == 2

    def test_a_caller_running_an_event_loop_gets_the_scores_too(self, server):
        async def from_a_loop():
            return score(judge(server), OUTPUTS, REFERENCES, INPUTS)

        assert asyncio.run(from_a_loop()).corpus.values == {"judge_score": 3.0}

    def test_an_example_the_rubric_cannot_render_fails_alone(self, server):
        result = score(judge(server), OUTPUTS, [None, "r", "r"], INPUTS)
        assert result.error_count == 1
        assert result.examples[0].error.startswith("the rubric did not render: reference:")
        assert len(server.requests) == 2


class TestTheKey:
    def test_without_api_key_env_no_token_of_this_machine_is_sent(self, server, monkeypatch):
        monkeypatch.setenv("HF_TOKEN", "hf_machine_token")
        run(server)
        assert {r["headers"].get("authorization") for r in server.requests} == {"Bearer no-key"}

    def test_the_key_is_read_from_the_named_environment_variable(self, server, monkeypatch):
        monkeypatch.setenv("JUDGE_KEY", "sk-test")
        run(server, api_key_env="JUDGE_KEY")
        assert {r["headers"].get("authorization") for r in server.requests} == {"Bearer sk-test"}

    def test_an_unset_key_variable_fails_every_example(self, server, monkeypatch):
        monkeypatch.delenv("JUDGE_KEY", raising=False)
        result = run(server, api_key_env="JUDGE_KEY")
        assert result.error_count == len(OUTPUTS)
        assert "JUDGE_KEY" in result.examples[0].error
        assert server.requests == []


class TestConfiguration:
    def test_the_registry_builds_a_judge_from_a_config_mapping(self):
        config = {"type": "judge", "endpoint": "https://judge.internal/v1", "rubric": RUBRIC, "concurrency": 8}
        scorer = build_scorer(parse_scorer_configs([config])[0])
        assert isinstance(scorer, JudgeScorer)
        assert scorer.metrics == ("judge_score",)
        assert scorer.options.concurrency == 8

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"endpoint": "file:///etc/passwd"}, "scheme must be http or https"),
            ({"endpoint": "http://user:secret@judge.internal"}, "must not hold credentials"),
            ({"endpoint": "http:///v1"}, "no host"),
            ({"endpoint": "http://judge.internal/v1?key=x"}, "no query or fragment"),
            ({"rubric": {**RUBRIC, "variables": {"output": {}, "context": {}}}}, "not \\['context'\\]"),
            (
                {"rubric": {"kind": "text", "text": "Rate {{ input }}", "variables": {"input": {}}}},
                "declare the variable output",
            ),
            ({"min_score": 5, "max_score": 1}, "min_score must be below max_score"),
            ({"api_key": "sk-test"}, "Extra inputs"),
        ],
    )
    def test_a_bad_judge_configuration_is_refused(self, options, message):
        config = {"type": "judge", "endpoint": "http://judge.internal", "rubric": RUBRIC, **options}
        with pytest.raises(ValidationError, match=message):
            parse_scorer_configs([config])


class TestReadingTheScore:
    @pytest.mark.parametrize(
        ("answer", "value"),
        [
            ('{"score": 4}', 4.0),
            ('Reasoning first.\n```json\n{"score": 3.5, "why": "ok"}\n```\nDone.', 3.5),
            ('{"verdict": {"score": 2}}', 2.0),
            ('{"notes": "x"} then {"score": 1}', 1.0),
            ('{broken {"score": 5}', 5.0),
        ],
    )
    def test_the_first_object_holding_the_field_gives_the_score(self, answer, value):
        assert read_score(answer) == value

    @pytest.mark.parametrize(
        ("answer", "reason"),
        [
            ("no json here", "no JSON object with 'score'"),
            ('{"score": "4"}', "'score' is '4', not a number"),
            ('{"score": true}', "not a number"),
            ('{"score": NaN}', "not a number"),
            ('{"score": 0}', "outside \\[1, 5\\]"),
        ],
    )
    def test_an_answer_without_a_valid_score_says_why(self, answer, reason):
        with pytest.raises(ValueError, match=reason):
            read_score(answer)

    def test_a_custom_field_and_range(self):
        assert read_score('{"rating": 0.75}', score_field="rating", min_score=0, max_score=1) == 0.75


def test_an_unparsed_example_is_not_an_error_of_the_result():
    assert ExampleScore.unparsed("why", {"answer": "x"}) == ExampleScore(
        error="why", unparseable=True, details={"answer": "x"}
    )
