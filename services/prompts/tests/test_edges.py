"""Input Postgres cannot store is refused at the edge with a 422 naming the field, never a 500 (found by schemathesis:
integers past int32/int64, booleans taken as numbers)."""

from __future__ import annotations

import pytest

from .conftest import ENGINEER
from .test_api import setup_prompt

pytestmark = pytest.mark.integration


async def test_a_version_past_int32_in_the_path_is_422(client):
    await setup_prompt(client)
    response = await client.get("/projects/p1/prompts/support/versions/2147483648", headers=ENGINEER)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["version"]


async def test_an_offset_past_int64_is_422(client):
    response = await client.get("/projects/p1/prompts?offset=9223372036854775808", headers=ENGINEER)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["offset"]


@pytest.mark.parametrize("version", [2147483648, True, "1"])
async def test_a_label_moved_to_a_version_that_is_no_int32_integer_is_422(client, version):
    await setup_prompt(client)
    response = await client.put(
        "/projects/p1/prompts/support/labels/production",
        json={"version": version, "reason": "edge"},
        headers=ENGINEER,
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["version"]


async def test_a_nul_in_a_description_is_422(client):
    response = await client.post(
        "/projects/p1/prompts", json={"name": "nul", "description": "a\u0000b"}, headers=ENGINEER
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["description"]
