"""Routes through the API: set, split, shadow and roll back, each a new version with its history row and its
``route.changed`` event; concurrent changes of one route lose none; refusals name the field."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from llmops.auth import Role
from llmops_deployment.routing import split_weights

from .access_support import add_deployment, outbox_events, set_status
from .conftest import ADMIN, ENGINEER, STEWARD, VIEWER, bearer

pytestmark = pytest.mark.integration
URL = "/projects/p1/routes"


async def put_route(client, name: str, body: dict, headers: dict = ENGINEER, status: int | None = None) -> dict:
    response = await client.put(f"{URL}/{name}", json=body, headers=headers)
    assert response.status_code in ((status,) if status else (200, 201)), response.text
    return response.json()


async def post(client, path: str, body: dict, headers: dict = ENGINEER) -> dict:
    response = await client.post(f"{URL}/{path}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def weights(route: dict) -> dict[str, float]:
    return {t["deployment_id"]: t["weight"] for t in route["targets"]}


class TestSplitArithmetic:
    def test_a_new_deployment_takes_its_share_and_the_others_keep_their_ratio(self):
        targets = [{"deployment_id": "a", "weight": 1}, {"deployment_id": "b", "weight": 3}]
        assert split_weights(targets, "c", 20) == [
            {"deployment_id": "a", "weight": 20.0},
            {"deployment_id": "b", "weight": 60.0},
            {"deployment_id": "c", "weight": 20.0},
        ]

    def test_a_target_changes_its_share(self):
        targets = [{"deployment_id": "a", "weight": 80}, {"deployment_id": "b", "weight": 20}]
        assert split_weights(targets, "b", 50) == [
            {"deployment_id": "a", "weight": 50.0},
            {"deployment_id": "b", "weight": 50.0},
        ]

    def test_all_the_traffic_leaves_the_others_at_zero(self):
        targets = [{"deployment_id": "a", "weight": 1}]
        assert split_weights(targets, "b", 100) == [
            {"deployment_id": "a", "weight": 0.0},
            {"deployment_id": "b", "weight": 100.0},
        ]

    def test_the_rest_needs_another_target_with_traffic(self):
        with pytest.raises(ValueError, match="other 30%"):
            split_weights([{"deployment_id": "a", "weight": 1}], "a", 70)


class TestSetRoute:
    async def test_a_new_route_is_version_1_with_its_history_and_event(self, deployment, client):
        a = await add_deployment(deployment, name="tiny-a")
        route = await put_route(
            client, "chat", {"targets": [{"deployment_id": a, "weight": 1}], "reason": "launch"}, status=201
        )
        assert route["version"] == 1 and route["updated_by"] == "eve"
        assert route["targets"] == [
            {"deployment_id": a, "name": "tiny-a", "status": "ready", "weight": 1.0, "percent": 100.0}
        ]
        [event] = await outbox_events(deployment, "route.changed")
        assert event["subject"] == route["id"]
        assert (
            event["data"].items()
            >= {"name": "chat", "version": 1, "change": "set", "reason": "launch", "actor": "eve"}.items()
        )
        history = (await client.get(f"{URL}/chat/history", headers=VIEWER)).json()
        assert [(v["version"], v["change"]) for v in history] == [(1, "set")]

    async def test_setting_it_again_makes_the_next_version(self, deployment, client):
        a, b, c = [await add_deployment(deployment) for _ in range(3)]
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}]})
        body = {"targets": [{"deployment_id": a, "weight": 3}, {"deployment_id": b, "weight": 1}]}
        route = await put_route(client, "chat", body | {"shadows": [c], "fallbacks": [b], "sticky": True}, ADMIN, 200)
        assert route["version"] == 2 and route["sticky"] is True
        assert [t["percent"] for t in route["targets"]] == [75.0, 25.0]
        assert [s["deployment_id"] for s in route["shadows"]] == [c]
        assert [f["deployment_id"] for f in route["fallbacks"]] == [b]
        assert len(await outbox_events(deployment, "route.changed")) == 2

    async def test_two_concurrent_creations_make_versions_1_and_2(self, deployment, client):
        a = await add_deployment(deployment)
        body = {"targets": [{"deployment_id": a, "weight": 1}]}
        first, second = await asyncio.gather(
            client.put(f"{URL}/race", json=body, headers=ENGINEER),
            client.put(f"{URL}/race", json=body, headers=ENGINEER),
        )
        assert sorted((first.status_code, second.status_code)) == [200, 201]
        assert sorted((first.json()["version"], second.json()["version"])) == [1, 2]

    async def test_a_request_without_a_token_is_refused(self, client):
        response = await client.put(f"{URL}/chat", json={"targets": []})
        assert response.status_code == 401

    async def test_a_caller_without_the_permission_is_refused(self, deployment, client):
        a = await add_deployment(deployment)
        body = {"targets": [{"deployment_id": a, "weight": 1}]}
        for headers in (VIEWER, STEWARD, bearer(Role.ML_ENGINEER, projects=("p2",))):
            assert (await client.put(f"{URL}/chat", json=body, headers=headers)).status_code == 403

    async def test_an_invalid_route_is_refused_naming_the_field(self, deployment, client):
        a = await add_deployment(deployment)
        elsewhere = await add_deployment(deployment, project="p2")
        stopped = await add_deployment(deployment, status="stopped")
        failed = await add_deployment(deployment, status="failed")
        one = [{"deployment_id": a, "weight": 1}]
        cases = [  # (body, the field named, an id the detail names)
            ({"targets": [{"deployment_id": str(uuid.uuid4()), "weight": 1}]}, "targets.0.deployment_id", None),
            ({"targets": [{"deployment_id": elsewhere, "weight": 1}]}, "targets.0.deployment_id", elsewhere),
            ({"targets": one, "shadows": [stopped]}, "shadows.0", stopped),
            ({"targets": one, "fallbacks": [failed]}, "fallbacks.0", failed),
            ({"targets": [{"deployment_id": a, "weight": 0}]}, "targets", None),
            ({"targets": one, "shadows": [a]}, "shadows.0", a),
            ({"targets": [*one, *one]}, "targets.1.deployment_id", a),
            ({"targets": [{"deployment_id": "tiny-a", "weight": 1}]}, "targets.0.deployment_id", None),
            ({"targets": [{"deployment_id": a, "weight": -1}]}, "targets.0.weight", None),
            ({"targets": []}, "targets", None),
            ({"targets": [{"deployment_id": a, "weight": "1"}]}, "targets.0.weight", None),
            ({"targets": one, "color": "red"}, "color", None),
        ]
        for body, field, named in cases:
            response = await client.put(f"{URL}/chat", json=body, headers=ENGINEER)
            assert response.status_code == 422, (body, response.text)
            assert field in {e["field"] for e in response.json()["errors"]}, (body, response.text)
            assert named is None or named in response.json()["detail"]
        assert await outbox_events(deployment, "route.changed") == []

    async def test_a_route_name_that_cannot_be_a_model_name_is_refused(self, deployment, client):
        a = await add_deployment(deployment)
        response = await client.put(
            f"{URL}/-bad name", json={"targets": [{"deployment_id": a, "weight": 1}]}, headers=ENGINEER
        )
        assert response.status_code == 422
        assert "name" in {e["field"] for e in response.json()["errors"]}


class TestSplit:
    async def test_a_canary_takes_its_share_and_the_others_keep_their_ratio(self, deployment, client):
        a, b, canary = [await add_deployment(deployment) for _ in range(3)]
        await put_route(
            client, "chat", {"targets": [{"deployment_id": a, "weight": 1}, {"deployment_id": b, "weight": 3}]}
        )
        route = await post(client, "chat/split", {"deployment_id": canary, "percent": 20, "reason": "canary"})
        assert route["version"] == 2
        assert weights(route) == {a: 20.0, b: 60.0, canary: 20.0}
        [_, event] = await outbox_events(deployment, "route.changed")
        assert event["data"]["change"] == "split" and event["data"]["reason"] == "canary"
        route = await post(client, "chat/split", {"deployment_id": canary, "percent": 100})
        assert weights(route) == {a: 0.0, b: 0.0, canary: 100.0}

    async def test_a_shadow_given_traffic_stops_being_a_shadow(self, deployment, client):
        a, b = await add_deployment(deployment), await add_deployment(deployment)
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}], "shadows": [b]})
        route = await post(client, "chat/split", {"deployment_id": b, "percent": 10})
        assert route["shadows"] == [] and weights(route) == {a: 90.0, b: 10.0}

    async def test_concurrent_splits_lose_no_version(self, deployment, client):
        a = await add_deployment(deployment)
        canaries = [await add_deployment(deployment) for _ in range(8)]
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}]})
        responses = await asyncio.gather(
            *(
                client.post(f"{URL}/chat/split", json={"deployment_id": c, "percent": 5}, headers=ENGINEER)
                for c in canaries
            )
        )
        assert [r.status_code for r in responses] == [200] * 8
        route = (await client.get(f"{URL}/chat", headers=VIEWER)).json()
        assert route["version"] == 9
        assert set(weights(route)) == {a, *canaries}
        history = (await client.get(f"{URL}/chat/history", headers=VIEWER)).json()
        assert [v["version"] for v in history] == list(range(9, 0, -1))
        assert len(await outbox_events(deployment, "route.changed")) == 9

    async def test_an_unknown_route_is_not_found(self, deployment, client):
        a = await add_deployment(deployment)
        response = await client.post(f"{URL}/nope/split", json={"deployment_id": a, "percent": 5}, headers=ENGINEER)
        assert response.status_code == 404

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/chat/split", json={})).status_code == 401

    async def test_a_viewer_is_refused(self, client):
        body = {"deployment_id": str(uuid.uuid4()), "percent": 5}
        assert (await client.post(f"{URL}/chat/split", json=body, headers=VIEWER)).status_code == 403

    async def test_an_invalid_split_is_refused_naming_the_field(self, deployment, client):
        a = await add_deployment(deployment)
        stopped = await add_deployment(deployment, status="stopped")
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}]})
        cases = [
            ({"deployment_id": a, "percent": 101}, "percent"),
            ({"deployment_id": a, "percent": 50}, "percent"),  # the other 50% to nobody
            ({"deployment_id": stopped, "percent": 10}, "deployment_id"),
            ({"percent": 10}, "deployment_id"),
        ]
        for body, field in cases:
            response = await client.post(f"{URL}/chat/split", json=body, headers=ENGINEER)
            assert response.status_code == 422, response.text
            assert field in {e["field"] for e in response.json()["errors"]}


class TestShadow:
    async def test_a_shadow_is_added_then_removed(self, deployment, client):
        a, b = await add_deployment(deployment), await add_deployment(deployment, name="candidate")
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}]})
        route = await post(client, "chat/shadow", {"deployment_id": b, "enabled": True})
        assert route["version"] == 2
        assert route["shadows"] == [{"deployment_id": b, "name": "candidate", "status": "ready"}]
        route = await post(client, "chat/shadow", {"deployment_id": b, "enabled": False})
        assert route["version"] == 3 and route["shadows"] == []
        changes = [e["data"]["change"] for e in await outbox_events(deployment, "route.changed")]
        assert changes == ["set", "shadow", "shadow"]

    async def test_asking_for_what_is_already_so_writes_no_version(self, deployment, client):
        a, b = await add_deployment(deployment), await add_deployment(deployment)
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}], "shadows": [b]})
        route = await post(client, "chat/shadow", {"deployment_id": b})
        assert route["version"] == 1

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/chat/shadow", json={})).status_code == 401

    async def test_a_steward_is_refused(self, client):
        body = {"deployment_id": str(uuid.uuid4())}
        assert (await client.post(f"{URL}/chat/shadow", json=body, headers=STEWARD)).status_code == 403

    async def test_an_invalid_shadow_is_refused_naming_the_field(self, deployment, client):
        a = await add_deployment(deployment)
        await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}]})
        for body, field in (
            ({"deployment_id": a}, "deployment_id"),
            ({"deployment_id": a, "enabled": "yes"}, "enabled"),
        ):
            response = await client.post(f"{URL}/chat/shadow", json=body, headers=ENGINEER)
            assert response.status_code == 422, response.text
            assert field in {e["field"] for e in response.json()["errors"]}


class TestRollback:
    async def test_a_rollback_restores_the_previous_version_as_the_next(self, deployment, client):
        a, canary = await add_deployment(deployment), await add_deployment(deployment)
        first = await put_route(client, "chat", {"targets": [{"deployment_id": a, "weight": 1}], "sticky": True})
        await post(client, "chat/split", {"deployment_id": canary, "percent": 30})
        route = await post(client, "chat/rollback", {"reason": "errors up"})
        assert route["version"] == 3
        assert weights(route) == {a: 1.0} and route["sticky"] is True
        assert (route["targets"], route["shadows"]) == (first["targets"], first["shadows"])
        event = (await outbox_events(deployment, "route.changed"))[-1]
        assert event["data"].items() >= {"version": 3, "change": "rollback", "restored_version": 1}.items()
        assert event["data"]["targets"] == [{"deployment_id": a, "weight": 1.0}]
        [latest, *_] = (await client.get(f"{URL}/chat/history", headers=VIEWER)).json()
        assert (latest["change"], latest["restored_version"], latest["reason"]) == ("rollback", 1, "errors up")

    async def test_a_rollback_to_a_named_version(self, deployment, client):
        a, b, c = [await add_deployment(deployment) for _ in range(3)]
        for target in (a, b, c):
            await put_route(client, "chat", {"targets": [{"deployment_id": target, "weight": 1}]})
        route = await post(client, "chat/rollback", {"to_version": 1})
        assert (route["version"], weights(route)) == (4, {a: 1.0})

    async def test_an_unknown_route_is_not_found(self, client):
        assert (await client.post(f"{URL}/nope/rollback", json={}, headers=ENGINEER)).status_code == 404

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.post(f"{URL}/chat/rollback", json={})).status_code == 401

    async def test_a_viewer_is_refused(self, client):
        assert (await client.post(f"{URL}/chat/rollback", json={}, headers=VIEWER)).status_code == 403

    async def test_an_invalid_rollback_is_refused_naming_the_version(self, deployment, client):
        a, b = await add_deployment(deployment), await add_deployment(deployment)
        await put_route(client, "first", {"targets": [{"deployment_id": a, "weight": 1}]})
        for version in (a, b):
            await put_route(client, "chat", {"targets": [{"deployment_id": version, "weight": 1}]})
        cases = [("first", {}), ("chat", {"to_version": 2}), ("chat", {"to_version": 0}), ("chat", {"to_version": "1"})]
        for name, body in cases:
            response = await client.post(f"{URL}/{name}/rollback", json=body, headers=ENGINEER)
            assert response.status_code == 422, response.text
            assert "to_version" in {e["field"] for e in response.json()["errors"]}

    async def test_a_rollback_to_a_deployment_stopped_since_is_refused(self, deployment, client):
        a, b = await add_deployment(deployment), await add_deployment(deployment)
        for version in (a, b):
            await put_route(client, "chat", {"targets": [{"deployment_id": version, "weight": 1}]})
        await set_status(deployment, a, "stopped")
        response = await client.post(f"{URL}/chat/rollback", json={}, headers=ENGINEER)
        assert response.status_code == 422 and a in response.json()["detail"]
        assert "to_version" in {e["field"] for e in response.json()["errors"]}


class TestReadRoutes:
    async def test_routes_are_listed_by_name_with_their_deployments(self, deployment, client):
        a = await add_deployment(deployment, name="tiny-a")
        for name in ("b-route", "a-route"):
            await put_route(client, name, {"targets": [{"deployment_id": a, "weight": 2}], "fallbacks": [a]})
        await set_status(deployment, a, "stopping")
        routes = (await client.get(URL, headers=VIEWER)).json()
        assert [r["name"] for r in routes] == ["a-route", "b-route"]
        assert routes[0]["fallbacks"] == [{"deployment_id": a, "name": "tiny-a", "status": "stopping"}]
        assert [
            r["name"] for r in (await client.get(URL, params={"limit": 1, "offset": 1}, headers=VIEWER)).json()
        ] == ["b-route"]

    async def test_an_unknown_route_is_not_found(self, client):
        assert (await client.get(f"{URL}/nope", headers=VIEWER)).status_code == 404
        assert (await client.get(f"{URL}/nope/history", headers=VIEWER)).status_code == 404

    async def test_a_request_without_a_token_is_refused(self, client):
        assert (await client.get(URL)).status_code == 401

    async def test_a_steward_is_refused(self, client):
        assert (await client.get(URL, headers=STEWARD)).status_code == 403

    async def test_a_limit_out_of_range_is_refused_naming_it(self, client):
        response = await client.get(URL, params={"limit": 0}, headers=VIEWER)
        assert response.status_code == 422
        assert "limit" in {e["field"] for e in response.json()["errors"]}
