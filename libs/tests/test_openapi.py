"""The OpenAPI every service publishes tells the truth about its errors, and the edge takes only what it documents:
problem answers documented from one place in the app factory, the methods a path takes, numbers Postgres can store,
strict JSON bodies. (tests/api/test_fuzz.py holds the services to the same with schemathesis.)"""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import TypeAdapter, ValidationError

from llmops.auth import Permission, Principal, Role, requires
from llmops.bus import make_broker
from llmops.db import Database
from llmops.errors import PROBLEM_JSON
from llmops.http import create_app
from llmops.openapi import problems
from llmops.runtime import Runtime
from llmops.settings import ServiceSettings
from llmops.types import RequestBody, Timestamp, Version

READ = Permission("things.read", {Role.VIEWER})
WRITE = Permission("things.write", {Role.ML_ENGINEER})
router = APIRouter(prefix="/projects/{project}/things")


class ThingIn(RequestBody):
    name: str
    version: Version
    public: bool = False


@router.get("")
async def list_things(project: str, principal: Annotated[Principal, Depends(requires(READ))]) -> list[str]:
    return []


@router.post("", status_code=201)
async def create_thing(
    project: str, body: ThingIn, principal: Annotated[Principal, Depends(requires(WRITE))]
) -> dict[str, str]:
    return {"name": body.name}


@router.get("/{thing}")
async def show_thing(project: str, thing: str, principal: Annotated[Principal, Depends(requires(READ))]) -> str:
    return thing


@router.post("/replay", responses=problems(404))
async def replay(project: str, principal: Annotated[Principal, Depends(requires(WRITE))]) -> str:
    return "replayed"


class Settings(ServiceSettings):
    service: str = "things"


@pytest.fixture(scope="module")
def app():
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # never connected: nothing here reaches the database
    runtime = Runtime(Settings(database_url=url), Database(url), make_broker(client_id="tests-openapi"))
    return create_app(runtime, title="things", routers=[router])


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def answers(app, method: str, path: str) -> dict[str, dict]:
    return app.openapi()["paths"][path][method]["responses"]


class TestDocumentedProblems:
    def test_each_route_documents_the_problems_its_shape_can_answer(self, app):
        assert set(answers(app, "get", "/projects/{project}/things")) == {"200", "401", "403", "422", "500", "503"}
        assert set(answers(app, "get", "/projects/{project}/things/{thing}")) == {
            "200", "401", "403", "404", "422", "500", "503"
        }  # fmt: skip
        assert set(answers(app, "post", "/projects/{project}/things")) == {
            "201", "400", "401", "403", "409", "413", "422", "500", "503"
        }  # fmt: skip
        assert set(answers(app, "get", "/readyz")) == {"200", "503", "500"}

    def test_a_route_adds_its_own_problems(self, app):
        assert "404" in answers(app, "post", "/projects/{project}/things/replay")

    def test_every_problem_is_problem_json_with_its_schema(self, app):
        schema = app.openapi()
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                for status, answer in operation["responses"].items():
                    if int(status) >= 400:
                        assert list(answer["content"]) == [PROBLEM_JSON], (method, path, status)
        validation = answers(app, "post", "/projects/{project}/things")["422"]["content"][PROBLEM_JSON]["schema"]
        assert validation == {"$ref": "#/components/schemas/ValidationProblem"}
        assert {"Problem", "ValidationProblem"} <= set(schema["components"]["schemas"])
        assert "HTTPValidationError" not in schema["components"]["schemas"]


class TestMethods:
    async def test_a_405_names_every_method_the_path_takes(self, client):
        response = await client.delete("/projects/p1/things")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"
        assert response.headers["content-type"] == PROBLEM_JSON

    async def test_a_path_that_names_a_route_is_not_taken_for_a_template(self, client):
        response = await client.put("/projects/p1/things/replay")
        assert response.status_code == 405 and response.headers["allow"] == "POST"


class TestStorableNumbers:
    @pytest.mark.parametrize(
        ("body", "field", "kind"),
        [
            pytest.param(b'{"name": "a", "version": 1, "extra": {"n": [1, 36893488147419103232]}}', "extra.n.1",
                         "int_out_of_range", id="int-past-64-bits"),
            pytest.param(b'{"name": "a", "version": -9223372036854775809}', "version", "int_out_of_range",
                         id="int-below-64-bits"),
            pytest.param(b'{"name": "a", "version": 1e400}', "version", "float_out_of_range", id="infinite-float"),
        ],
    )  # fmt: skip
    async def test_a_number_postgres_cannot_store_is_a_422_naming_it(self, client, body, field, kind):
        response = await client.post("/projects/p1/things", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert {"field": field, "location": "body", "type": kind}.items() <= response.json()["errors"][0].items()

    async def test_the_largest_64_bit_integer_passes_the_edge(self, client):
        response = await client.post(
            "/projects/p1/things",
            content=b'{"name": "a", "version": 9223372036854775807}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 401  # through the edge's guard, to the route's authentication


class TestStrictTypes:
    @pytest.mark.parametrize("value", [True, "1", 0, 2**31, 1.5])
    def test_a_version_is_a_positive_int32_and_nothing_else(self, value):
        with pytest.raises(ValidationError):
            ThingIn.model_validate({"name": "a", "version": value})

    @pytest.mark.parametrize("value", [1, 1.0, 2**31 - 1])
    def test_a_version_is_what_json_schema_calls_an_integer(self, value):
        assert ThingIn.model_validate({"name": "a", "version": value}).version == int(value)

    @pytest.mark.parametrize("value", [0, 1, "true", "yes"])
    def test_a_body_boolean_is_true_or_false(self, value):
        with pytest.raises(ValidationError):
            ThingIn.model_validate({"name": "a", "version": 1, "public": value})

    @pytest.mark.parametrize("value", ["0.5", "1700000000", 1700000000, "2026-01-31T12:00:00"])
    def test_a_timestamp_is_rfc3339_with_its_offset_not_seconds(self, value):
        with pytest.raises(ValidationError):
            TypeAdapter(Timestamp).validate_python(value)

    def test_a_timestamp_with_its_offset_is_taken(self):
        assert TypeAdapter(Timestamp).validate_python("2026-01-31T12:00:00Z").year == 2026
