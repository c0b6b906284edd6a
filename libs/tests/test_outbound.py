"""URLs a request names for the platform to call: http(s) only, no credentials, allowed hosts only."""

from __future__ import annotations

import pytest

from llmops.outbound import OutboundURLError, check_outbound_url


def check(url: str, allowed: list[str] | None = None) -> str:
    return check_outbound_url(url, allowed or [], "endpoint.url", credentials_hint="name a secret instead")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/x", "http://", "gopher://h:70/"])
def test_only_http_urls_with_a_host_pass(url):
    with pytest.raises(OutboundURLError, match=r"endpoint\.url must be an http\(s\) URL"):
        check(url)


def test_credentials_in_a_url_are_refused_with_the_hint():
    with pytest.raises(OutboundURLError, match="name a secret instead"):
        check("https://user:pw@api.example.com/v1")


def test_a_host_outside_the_allowed_list_is_refused():
    with pytest.raises(OutboundURLError, match=r"'169\.254\.169\.254' is not among the allowed hosts"):
        check("http://169.254.169.254/latest", ["api.example.com"])


@pytest.mark.parametrize("allowed", [["api.example.com"], ["api.example.com:8443"], []])
def test_an_allowed_host_or_host_and_port_passes(allowed):
    assert check("https://api.example.com:8443/v1", allowed) == "https://api.example.com:8443/v1"
