"""The gateway's request check, stated once in its OpenAPI document: what it refuses, and how it names the field."""

from __future__ import annotations

import pytest

from llmops_deployment.gateway.errors import GatewayError
from llmops_deployment.gateway.openapi import check_request, openapi

LIMIT = 4096


def refused(api: str, body) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        check_request(api, body, LIMIT)
    assert caught.value.status == 400
    return caught.value


def test_valid_requests_pass_with_unknown_openai_parameters():
    check_request(
        "chat.completions", {"model": "r", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}, LIMIT
    )
    check_request(
        "chat.completions", {"model": "r", "messages": [], "prompt": {"name": "support", "label": "prod"}}, LIMIT
    )
    check_request("completions", {"model": "r", "prompt": ["one text"], "max_tokens": LIMIT, "seed": 2**53 - 1}, LIMIT)


@pytest.mark.parametrize(
    ("api", "body", "param", "words"),
    [
        ("chat.completions", {"model": "r"}, "messages", "messages (a non-empty list) or prompt is required"),
        ("chat.completions", {"model": "r", "messages": []}, "messages", "or prompt is required"),
        ("chat.completions", {"model": "r", "messages": [{"role": "robot"}]}, "messages[0].role", "must be one of"),
        ("chat.completions", {"model": 3, "messages": [{"role": "user"}]}, "model", "must be string"),
        ("chat.completions", {"model": "r", "messages": [{"role": "user"}], "stream": "yes"}, "stream", "boolean"),
        (
            "chat.completions",
            {"model": "r", "messages": [{"role": "user"}], "temperature": 9},
            "temperature",
            "smaller than or equal to 2",
        ),
        ("chat.completions", {"model": "r", "messages": [{"role": "user"}], "n": 2}, "n", "smaller than or equal to 1"),
        ("completions", {"model": "r", "prompt": ["a", "b"]}, "prompt", "a list of one text"),
        (
            "completions",
            {"model": "r", "prompt": "a", "seed": -(2**63) - 1},
            "seed",
            "bigger than or equal to -9007199254740991",
        ),
        ("completions", {"model": "r", "prompt": {"name": "Bad Name"}}, "prompt", "a prompt of the registry"),
        (
            "chat.completions",
            {"model": "r", "prompt": {"name": "p", "label": "a", "version": 1}},
            "prompt",
            "a label or a version, not both",
        ),
    ],
)
def test_a_request_that_breaks_the_document_is_a_400_naming_the_field(api, body, param, words):
    error = refused(api, body)
    assert error.param == param and words in error.message, (error.param, error.message)


def test_too_many_tokens_keeps_its_own_code():
    body = {"model": "r", "messages": [{"role": "user"}], "max_tokens": LIMIT + 1}
    error = refused("chat.completions", body)
    assert (error.param, error.code) == ("max_tokens", "max_tokens_too_large")


def test_the_document_states_the_check_and_every_error_it_answers():
    document = openapi(LIMIT)
    chat = document["paths"]["/v1/chat/completions"]["post"]
    schema = chat["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["max_tokens"]["maximum"] == LIMIT
    assert {"400", "401", "403", "404", "413", "429", "502", "503", "504"} <= set(chat["responses"])
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
