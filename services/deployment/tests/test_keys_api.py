"""API keys through the API: created with a secret shown once (stored as its sha256, never in a list or an event),
listed, revoked once; and the form of a key the gateway shares."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from sqlalchemy import select

from llmops.auth import Role
from llmops_deployment.access import PREFIX_LENGTH, hash_api_key, is_api_key, new_api_key
from llmops_deployment.models import api_keys

from .access_support import outbox_events, outbox_text
from .conftest import ADMIN, ENGINEER, STEWARD, VIEWER, bearer

pytestmark = pytest.mark.integration
URL = "/projects/p1/keys"


async def create(client, body: dict, headers: dict = ENGINEER) -> dict:
    response = await client.post(URL, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


class TestKeyForm:
    def test_a_key_is_the_marker_and_40_url_safe_characters(self):
        secret = new_api_key()
        assert re.fullmatch(r"llmk_[A-Za-z0-9_-]{40}", secret)
        assert is_api_key(secret) and not is_api_key("eyJhbGciOi.x.y")
        assert new_api_key() != secret

    def test_its_hash_is_the_sha256_of_the_whole_key(self):
        assert hash_api_key("llmk_abc") == hashlib.sha256(b"llmk_abc").hexdigest()


class TestCreateKey:
    async def test_the_secret_is_shown_once_and_stored_as_its_hash(self, deployment, client):
        key = await create(client, {"name": "web app", "requests_per_minute": 60, "tokens_per_minute": 10_000})
        secret = key["secret"]
        assert re.fullmatch(r"llmk_[A-Za-z0-9_-]{40}", secret)
        assert key["prefix"] == secret[:PREFIX_LENGTH] and key["created_by"] == "eve"
        assert (key["requests_per_minute"], key["tokens_per_minute"], key["revoked_at"]) == (60, 10_000, None)
        async with deployment.runtime.db.sessions() as session:
            stored = (await session.execute(select(api_keys).where(api_keys.c.id == key["id"]))).one()
        assert stored.key_hash == hash_api_key(secret)
        [event] = await outbox_events(deployment, "api_key.created")
        assert event["subject"] == key["id"]
        assert event["data"] == {
            "key_id": key["id"],
            "project": "p1",
            "name": "web app",
            "prefix": key["prefix"],
            "created_by": "eve",
        }

    async def test_the_secret_is_in_no_list_and_no_event(self, deployment, client):
        key = await create(client, {"name": "batch"}, ADMIN)
        listing = await client.get(URL, headers=VIEWER)
        assert listing.status_code == 200
        [listed] = listing.json()
        assert listed["id"] == key["id"] and "secret" not in listed and "key_hash" not in listed
        assert key["secret"] not in listing.text and hash_api_key(key["secret"]) not in listing.text
        await client.post(f"{URL}/{key['id']}/revoke", json={"reason": "leaked"}, headers=ENGINEER)
        events = await outbox_text(deployment)
        assert key["secret"] not in events and hash_api_key(key["secret"]) not in events
        assert key["secret"][PREFIX_LENGTH:] not in events

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(URL, json={"name": "x"})).status_code == 401

    async def test_a_caller_without_the_permission_is_refused(self, client):
        for headers in (VIEWER, STEWARD, bearer(Role.ML_ENGINEER, projects=("p2",))):
            assert (await client.post(URL, json={"name": "x"}, headers=headers)).status_code == 403

    async def test_an_invalid_key_is_refused_naming_the_field(self, deployment, client):
        cases = [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"name": "x", "requests_per_minute": 0}, "requests_per_minute"),
            ({"name": "x", "tokens_per_minute": "100"}, "tokens_per_minute"),
            ({"name": "x", "tokens_per_minute": 2**31}, "tokens_per_minute"),
            ({"name": "x", "secret": "llmk_mine"}, "secret"),
        ]
        for body, field in cases:
            response = await client.post(URL, json=body, headers=ENGINEER)
            assert response.status_code == 422, (body, response.text)
            assert field in {e["field"] for e in response.json()["errors"]}, response.text
        assert await outbox_events(deployment, "api_key.created") == []


class TestListKeys:
    async def test_revoked_keys_are_listed_only_when_asked(self, client):
        kept, revoked = await create(client, {"name": "kept"}), await create(client, {"name": "gone"})
        await client.post(f"{URL}/{revoked['id']}/revoke", headers=ENGINEER)
        assert [k["name"] for k in (await client.get(URL, headers=VIEWER)).json()] == ["kept"]
        everything = (await client.get(URL, params={"include_revoked": True}, headers=VIEWER)).json()
        assert {k["id"] for k in everything} == {kept["id"], revoked["id"]}

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.get(URL)).status_code == 401

    async def test_a_steward_is_refused(self, client):
        assert (await client.get(URL, headers=STEWARD)).status_code == 403

    async def test_a_limit_out_of_range_is_refused_naming_it(self, client):
        response = await client.get(URL, params={"limit": 501}, headers=VIEWER)
        assert response.status_code == 422 and "limit" in {e["field"] for e in response.json()["errors"]}


class TestRevokeKey:
    async def test_a_revoked_key_is_marked_and_published_once(self, deployment, client):
        key = await create(client, {"name": "web"})
        response = await client.post(f"{URL}/{key['id']}/revoke", json={"reason": "rotated"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["revoked_by"] == "ada" and response.json()["revoked_at"] is not None
        again = await client.post(f"{URL}/{key['id']}/revoke", headers=ADMIN)
        assert again.status_code == 409
        [event] = await outbox_events(deployment, "api_key.revoked")
        assert event["data"] == {"key_id": key["id"], "project": "p1", "revoked_by": "ada", "reason": "rotated"}

    async def test_another_projects_key_is_not_found(self, client):
        theirs = await client.post(
            "/projects/p2/keys", json={"name": "theirs"}, headers=bearer(Role.ADMIN, projects=("p2",))
        )
        key = theirs.json()
        response = await client.post(f"{URL}/{key['id']}/revoke", headers=ENGINEER)
        assert response.status_code == 404
        assert (await client.post(f"{URL}/{uuid.uuid4()}/revoke", headers=ENGINEER)).status_code == 404

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/{uuid.uuid4()}/revoke")).status_code == 401

    async def test_a_viewer_is_refused(self, client):
        assert (await client.post(f"{URL}/{uuid.uuid4()}/revoke", headers=VIEWER)).status_code == 403

    async def test_an_invalid_revocation_is_refused_naming_the_field(self, client):
        response = await client.post(f"{URL}/not-a-key/revoke", headers=ENGINEER)
        assert response.status_code == 422 and "key_id" in {e["field"] for e in response.json()["errors"]}
        response = await client.post(f"{URL}/{uuid.uuid4()}/revoke", json={"reason": 3}, headers=ENGINEER)
        assert response.status_code == 422 and "reason" in {e["field"] for e in response.json()["errors"]}
