"""Requests and tokens per minute, per key and per project, over a sliding minute (a fake clock)."""

from __future__ import annotations

import pytest

from llmops_deployment.gateway.limits import RateLimited, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admit(limiter: RateLimiter, *, key_rpm=None, key_tpm=None, project_rpm=None, project_tpm=None, tokens=1, key="k1"):
    return limiter.admit(
        project="p1",
        key_id=key,
        key_rpm=key_rpm,
        key_tpm=key_tpm,
        project_rpm=project_rpm,
        project_tpm=project_tpm,
        tokens=tokens,
    )


class TestRequestsPerMinute:
    def test_the_request_over_a_keys_limit_is_refused_with_the_wait(self):
        clock = Clock()
        limiter = RateLimiter(clock=clock)
        for _ in range(3):
            admit(limiter, key_rpm=3)
            clock.now += 10

        with pytest.raises(RateLimited) as refused:
            admit(limiter, key_rpm=3)

        assert refused.value.limit == "requests-per-minute" and refused.value.scope == "key k1"
        assert refused.value.retry_after == 30  # the first request leaves the minute 60 s after it came

    def test_the_minute_slides(self):
        clock = Clock()
        limiter = RateLimiter(clock=clock)
        admit(limiter, key_rpm=1)
        clock.now += 60

        admit(limiter, key_rpm=1)

    def test_a_project_limit_holds_over_all_its_keys(self):
        limiter = RateLimiter(clock=Clock())
        admit(limiter, project_rpm=2, key="a")
        admit(limiter, project_rpm=2, key="b")

        with pytest.raises(RateLimited) as refused:
            admit(limiter, project_rpm=2, key="c")

        assert refused.value.scope == "project p1"

    def test_a_refused_request_is_not_counted(self):
        limiter = RateLimiter(clock=Clock())
        admit(limiter, key_rpm=5, project_rpm=1)
        with pytest.raises(RateLimited):
            admit(limiter, key_rpm=5, project_rpm=1)

        admit(limiter, key_rpm=5, project_rpm=None)
        admit(limiter, key_rpm=5, project_rpm=None)
        admit(limiter, key_rpm=5, project_rpm=None)
        admit(limiter, key_rpm=5, project_rpm=None)  # the refused one did not count against the key's five
        with pytest.raises(RateLimited):
            admit(limiter, key_rpm=5)

    def test_settings_defaults_apply_where_nothing_is_set(self):
        limiter = RateLimiter(default_rpm=1, clock=Clock())
        admit(limiter)

        with pytest.raises(RateLimited):
            admit(limiter)


class TestTokensPerMinute:
    def test_tokens_admitted_count_against_the_limit(self):
        limiter = RateLimiter(clock=Clock())
        admit(limiter, key_tpm=100, tokens=80)

        with pytest.raises(RateLimited) as refused:
            admit(limiter, key_tpm=100, tokens=30)

        assert refused.value.limit == "tokens-per-minute"

    def test_real_usage_replaces_the_admitted_most(self):
        limiter = RateLimiter(clock=Clock())
        at = admit(limiter, key_tpm=100, tokens=80)
        limiter.record_tokens(project="p1", key_id="k1", at=at, admitted=80, used=10)

        admit(limiter, key_tpm=100, tokens=80)
