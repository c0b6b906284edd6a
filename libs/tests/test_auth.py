"""Token verification without the platform running: HS256, RS256 through a JWKS, claims and roles."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from llmops.auth import AuthError, Permission, Principal, Role, TokenVerifier, issue_token
from llmops.settings import AuthSettings


def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def oidc():
    """A local stand-in for an OIDC provider's JWKS endpoint (the provider is outside the platform)."""
    key = rsa_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/slow"):
                time.sleep(1.0)  # a provider slow to answer
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def rs256_token(key, **claims) -> str:
    now = int(time.time())
    base = {
        "sub": "bob",
        "roles": ["auditor"],
        "projects": ["*"],
        "iss": "https://idp.example",
        "aud": "llmops",
        "iat": now,
        "exp": now + 60,
    }
    return jwt.encode(base | claims, key, algorithm="RS256", headers={"kid": "k1"})


class TestRS256ThroughJWKS:
    def test_a_token_signed_by_the_provider_is_accepted(self, oidc):
        key, url = oidc
        verifier = TokenVerifier(AuthSettings(algorithm="RS256", jwks_url=url, issuer="https://idp.example"))
        assert verifier.verify(rs256_token(key)) == Principal("bob", frozenset({Role.AUDITOR}), frozenset({"*"}))

    def test_a_token_signed_by_another_key_is_refused(self, oidc):
        _, url = oidc
        verifier = TokenVerifier(AuthSettings(algorithm="RS256", jwks_url=url, issuer="https://idp.example"))
        with pytest.raises(AuthError) as caught:
            verifier.verify(rs256_token(rsa_key()))
        assert (caught.value.status, caught.value.reason) == (401, "invalid_token")

    async def test_a_slow_jwks_fetch_does_not_block_the_event_loop(self, oidc):
        import asyncio

        key, url = oidc
        settings = AuthSettings(
            algorithm="RS256", jwks_url=url.replace("/jwks.json", "/slow"), issuer="https://idp.example"
        )
        verifier = TokenVerifier(settings)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            principal = await verifier.verify_async(rs256_token(key))
        finally:
            ticker.cancel()
        assert principal.subject == "bob"
        assert ticks >= 10, "the event loop stood still while the keys were fetched"

    def test_rs256_needs_a_jwks_url(self):
        with pytest.raises(ValueError, match="JWKS_URL"):
            AuthSettings(algorithm="RS256")


class TestHS256:
    def test_an_issued_token_verifies_to_its_principal(self):
        token = issue_token("carol", [Role.DATA_STEWARD], ["p1", "p2"])
        principal = TokenVerifier().verify(token)
        assert principal == Principal("carol", frozenset({Role.DATA_STEWARD}), frozenset({"p1", "p2"}))
        assert principal.can_access("p2") and not principal.can_access("p3")

    def test_a_token_for_another_audience_is_refused(self):
        token = issue_token("carol", [Role.VIEWER], ["p1"], AuthSettings(audience="someone-else"))
        with pytest.raises(AuthError, match=r"(?i)audience"):
            TokenVerifier().verify(token)

    def test_a_token_with_an_unknown_role_is_refused(self):
        settings = AuthSettings()
        token = jwt.encode(
            {
                "sub": "x",
                "roles": ["root"],
                "iss": settings.issuer,
                "aud": settings.audience,
                "exp": int(time.time()) + 60,
            },
            settings.jwt_secret.get_secret_value(),
        )
        with pytest.raises(AuthError, match="unknown role"):
            TokenVerifier().verify(token)


class TestPermissions:
    def test_admin_holds_every_permission(self):
        permission = Permission("audit.read", {Role.AUDITOR})
        assert permission.granted_to(frozenset({Role.ADMIN}))
        assert permission.granted_to(frozenset({Role.AUDITOR}))
        assert not permission.granted_to(frozenset({Role.VIEWER, Role.ML_ENGINEER}))
