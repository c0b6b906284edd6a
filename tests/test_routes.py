"""The route walk: every route of every service declares its permission and how it keeps to the caller's projects.
It prints the table it checks (``pytest -s`` shows it)."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI

from llmops.auth import Permission, Principal, ProjectScope, Role, cross_project, in_project, requires
from llmops.routes import OPEN_ROUTES, api_routes, route_problems, route_table
from llmops_audit.app import AuditService
from llmops_datasets.app import DatasetsService
from llmops_deployment.app import DeploymentService
from llmops_evaluation.app import EvaluationService
from llmops_monitoring.app import MonitoringService
from llmops_prompts.app import PromptsService
from llmops_training.app import TrainingService

SERVICES = {
    "audit": AuditService,
    "datasets": DatasetsService,
    "prompts": PromptsService,
    "training": TrainingService,
    "evaluation": EvaluationService,
    "deployment": DeploymentService,
    "monitoring": MonitoringService,
}


@pytest.fixture(scope="module", params=sorted(SERVICES))
def service_app(request) -> tuple[str, FastAPI]:
    return request.param, SERVICES[request.param]().app  # nothing connects until the service starts


def test_every_route_declares_a_permission_and_a_project_check(service_app) -> None:
    name, app = service_app
    table = route_table(app)
    for methods, path, permission, scope in table:
        print(f"{name:9} {methods:7} {path:70} {permission or '-':24} {scope or '-'}")
    assert len(table) > 3, "the service's own routes were not found"
    assert route_problems(app) == []


READ = Permission("things.read", {Role.VIEWER})


def app_with(*routes: tuple[str, bool | str]) -> FastAPI:
    """An app with a route per (path, guard): True for the guard the path calls for (``in_project`` under
    ``{project}``, else ``requires``), "requires" for ``requires`` wherever, False for none."""
    router = APIRouter()
    for path, guarded in routes:
        if guarded is True and "{project}" in path:

            @router.get(path)
            async def scoped_route(scope: Annotated[ProjectScope, Depends(in_project(READ))]) -> dict:
                return {}

        elif guarded:

            @router.get(path)
            async def guarded_route(principal: Annotated[Principal, Depends(requires(READ))]) -> dict:
                return {}

        else:

            @router.get(path)
            async def open_route() -> dict:
                return {}

    app = FastAPI()
    app.include_router(router)
    return app


class TestTheWalkItself:
    def test_a_route_without_a_permission_fails_it(self) -> None:
        app = app_with(("/projects/{project}/things", True), ("/projects/{project}/forgotten", False))
        assert route_problems(app) == [
            "GET /projects/{project}/forgotten: no permission declared (depend on llmops.auth.requires)"
        ]

    def test_a_route_outside_a_project_without_a_declared_scope_fails_it(self) -> None:
        app = app_with(("/things", True))
        assert route_problems(app) == ["GET /things: no project check (a {project} path, or cross_project(...))"]

    def test_a_project_route_guarded_without_its_project_scope_fails_it(self) -> None:
        app = app_with(("/projects/{project}/things", True), ("/projects/{project}/unscoped", "requires"))
        assert route_problems(app) == [
            "GET /projects/{project}/unscoped: its project is not checked (depend on llmops.auth.in_project)"
        ]

    def test_a_project_route_cannot_declare_its_way_out_of_the_scope(self) -> None:
        router = APIRouter()

        @router.get("/projects/{project}/declared", openapi_extra=cross_project("trust me"))
        async def declared(principal: Annotated[Principal, Depends(requires(READ))]) -> dict:
            return {}

        app = FastAPI()
        app.include_router(router)
        assert route_problems(app) == [
            "GET /projects/{project}/declared: its project is not checked (depend on llmops.auth.in_project)"
        ]

    def test_guarding_any_service_project_route_without_its_scope_fails_it(self, service_app) -> None:
        _, app = service_app
        project_routes = [route for route in api_routes(app) if "{project}" in route.path]
        if not project_routes:
            pytest.skip("the service has no route under {project}")
        for route in project_routes:
            dependency = _scope_dependency(route.dependant)
            scoped = dependency.call
            dependency.call = requires(scoped.permission)  # the same permission, without the project scope
            try:
                flagged = [p for p in route_problems(app) if f" {route.path}: its project is not checked" in p]
            finally:
                dependency.call = scoped
            assert flagged, f"{route.path} without in_project passed the walk"
        assert route_problems(app) == []

    def test_removing_the_permission_of_any_service_route_fails_it(self, service_app) -> None:
        _, app = service_app
        for route in api_routes(app):
            if route.path in OPEN_ROUTES:
                continue
            holder, dependency = _permission_dependency(route.dependant)
            holder.dependencies.remove(dependency)
            try:
                flagged = [p for p in route_problems(app) if f" {route.path}: no permission" in p]
            finally:
                holder.dependencies.append(dependency)
            assert flagged, f"{route.path} without its permission passed the walk"
        assert route_problems(app) == []


def _permission_dependency(dependant):
    """The dependant holding the permission dependency, and that dependency."""
    pending = [dependant]
    while pending:
        current = pending.pop(0)
        for dependency in current.dependencies:
            if getattr(dependency.call, "permission", None) is not None:
                return current, dependency
            pending.append(dependency)
    raise AssertionError("no permission dependency")


def _scope_dependency(dependant):
    """The ``in_project`` dependency of a route's dependant."""
    pending = [dependant]
    while pending:
        current = pending.pop(0)
        for dependency in current.dependencies:
            if getattr(dependency.call, "scopes_path_project", False):
                return dependency
            pending.append(dependency)
    raise AssertionError("no in_project dependency")
