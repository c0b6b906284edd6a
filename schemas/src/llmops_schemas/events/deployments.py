"""Deployment events: model versions served by serving workers, routes that send traffic to them, API keys.

``deployment.requested`` carries everything a serving worker needs (the backend, the model version's artifact and
its base model, or an external URL with the name of the secret that holds its key), so a worker reads no other
service's state. A worker reports ``ready`` (endpoint, model hash), ``restarted`` (the backend crashed and was started
again), ``failed`` (too many crashes in a row, with the backend's last log lines) and, after
``deployment.stop.requested``, ``stopped``. A deployment of a version without a passed gate is refused unless an
admin overrides, which is its own event. Route changes (set, split, shadow, rollback) are events too, and so are the
creation and revocation of API keys (never their secret).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops_schemas import topics
from llmops_schemas.envelope import EventPayload
from llmops_schemas.events.training import BaseModelRef

SHA256 = r"^[0-9a-f]{64}$"
Backend = Literal["transformers", "vllm", "tgi", "external"]

#: The longest backend log excerpt an event carries, in characters.
MAX_LOG_TAIL = 8_000


class ServedModel(BaseModel):
    """The registered model version a deployment serves: its artifact (adapter or full model, and the stored merged
    model when training kept one) and the base model an adapter needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_version_id: str
    name: str
    version: int = Field(ge=1)
    kind: Literal["adapter", "full"]
    manifest_sha256: str = Field(pattern=SHA256)
    merged_manifest_sha256: str | None = Field(default=None, pattern=SHA256)
    base_model: BaseModelRef


class ExternalEndpoint(BaseModel):
    """An OpenAI-compatible server that already runs. ``secret_ref`` names the environment variable (of the gateway
    and workers) holding its key: the key itself never travels in an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(max_length=2048)
    model: str = Field(min_length=1, max_length=256, description="the model name the server is asked for")
    secret_ref: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]{0,127}$")


class GateCheck(BaseModel):
    """Why a deployment was allowed: the passed gate decisions of the suites attached to the model (or, with an
    override, the gates that were missing or failed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str
    suite_version: int | None = None
    decision_id: str | None = None
    run_id: str | None = None
    passed: bool | None = Field(description="None: no decision for this suite yet")
    overridden_by: str | None = Field(default=None, description="the override id of evaluation, when one decided")


class DeploymentRequested(EventPayload):
    """A deployment was accepted and waits for a serving worker of its pool. Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.requested"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    name: str
    pool: str
    backend: Backend
    replicas: int = Field(default=1, ge=1, le=64)
    model: ServedModel | None = Field(default=None, description="None only for an external backend")
    external: ExternalEndpoint | None = None
    generation: dict[str, Any] = Field(default_factory=dict, description="defaults for requests that set none")
    gates: list[GateCheck] = Field(default_factory=list)
    gate_override: bool = False
    requested_by: str


class DeploymentGateOverridden(EventPayload):
    """An admin deployed a version whose gates were missing or failed, with a reason. Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.gate.overridden"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    model_version_id: str
    gates: list[GateCheck]
    reason: str = Field(min_length=1, max_length=2000)
    actor: str


class DeploymentReady(EventPayload):
    """A replica of a deployment answers at ``endpoint`` (an OpenAI-compatible base URL). Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.ready"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    replica: int = Field(ge=0)
    endpoint: str
    backend: Backend
    served_model: str = Field(description="the model name the backend is asked for")
    model_version_id: str | None = None
    model_hash: str | None = Field(default=None, pattern=SHA256, description="manifest of the files served")
    worker: str
    attempt: int = Field(ge=1)


class DeploymentRestarted(EventPayload):
    """A replica's backend died and was started again after ``backoff_seconds``. Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.restarted"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    replica: int = Field(ge=0)
    restarts: int = Field(ge=1, description="crashes in a row so far")
    exit_code: int | None = None
    backoff_seconds: float = Field(ge=0)
    worker: str


class DeploymentFailed(EventPayload):
    """A deployment could not be served (artifacts, backend start, too many crashes in a row); ``log_tail`` holds the
    backend's last log lines. Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.failed"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    replica: int = Field(default=0, ge=0)
    reason: str
    log_tail: str = Field(default="", max_length=MAX_LOG_TAIL)
    worker: str | None = None


class DeploymentStopRequested(EventPayload):
    """Someone asked for a deployment to stop: workers drain its in-flight requests, then stop it. Subject: the
    deployment id."""

    event_type: ClassVar[str] = "deployment.stop.requested"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    requested_by: str
    reason: str = ""


class DeploymentStopped(EventPayload):
    """A replica of a deployment stopped (after draining). Subject: the deployment id."""

    event_type: ClassVar[str] = "deployment.stopped"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    deployment_id: str
    project: str
    replica: int = Field(ge=0)
    worker: str


class RouteTarget(BaseModel):
    """One deployment of a route with its share of the traffic (weights are relative)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployment_id: str
    weight: float = Field(ge=0, le=1_000_000)


class RouteChanged(EventPayload):
    """A route (the ``model`` name applications ask for) now sends traffic differently: its weighted targets,
    shadows (copies whose answers are recorded, never returned), fallbacks in order, and stickiness. ``change`` says
    which operation made it; a rollback restores the route as it was at ``restored_version``. Subject: the route id."""

    event_type: ClassVar[str] = "route.changed"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    route_id: str
    project: str
    name: str
    version: int = Field(ge=1)
    change: Literal["set", "split", "shadow", "rollback"]
    targets: list[RouteTarget]
    shadows: list[str] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)
    sticky: bool = False
    restored_version: int | None = Field(default=None, ge=1)
    reason: str = ""
    actor: str


class ApiKeyCreated(EventPayload):
    """An API key for applications was created (its hash stays in the deployment service; the secret was shown
    once). Subject: the key id."""

    event_type: ClassVar[str] = "api_key.created"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    key_id: str
    project: str
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it")
    created_by: str


class ApiKeyRevoked(EventPayload):
    """An API key stopped working. Subject: the key id."""

    event_type: ClassVar[str] = "api_key.revoked"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    key_id: str
    project: str
    revoked_by: str
    reason: str = ""


class BudgetSet(EventPayload):
    """A token or cost budget over a period for a project, a user or a key. Subject: the budget id."""

    event_type: ClassVar[str] = "budget.set"
    topic: ClassVar[str] = topics.DEPLOYMENTS

    budget_id: str
    project: str
    scope: Literal["project", "user", "key"]
    subject: str = Field(description="the project, the user id or the key id")
    period: Literal["day", "month", "total"]
    max_tokens: int | None = Field(default=None, ge=0)
    max_cost: float | None = Field(default=None, ge=0)
    actor: str
