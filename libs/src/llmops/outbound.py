"""URLs a request names for the platform to call (an endpoint to evaluate, a judge, an external model server): what
keeps a user's request from making a service call anything else."""

from __future__ import annotations

from urllib.parse import urlsplit


class OutboundURLError(ValueError):
    """A URL the platform must not call: ``str(error)`` says why, naming the field."""


def check_outbound_url(url: str, allowed_hosts: list[str], field: str, *, credentials_hint: str) -> str:
    """``url`` if it is http(s), carries no credentials, and names a host of ``allowed_hosts`` (host or host:port;
    an empty list allows any host); else :class:`OutboundURLError`. ``credentials_hint`` says where a key goes
    instead."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundURLError(f"{field} must be an http(s) URL")
    if parts.username or parts.password:
        raise OutboundURLError(f"{field} must not carry credentials ({credentials_hint})")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if allowed_hosts and host not in allowed_hosts and parts.hostname not in allowed_hosts:
        raise OutboundURLError(f"{field}: host {host!r} is not among the allowed hosts")
    return url
