"""The evaluation service's use cases: projections, suites (immutable versions), runs and their triggers. Gates are
:mod:`llmops_evaluation.gating`'s. Errors are RFC 9457 problems; a 422 names the field it is about."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem
from llmops.runtime import Actor, Runtime
from llmops.scoring import build_scorers, parse_scorer_configs
from llmops.scoring.gates import check_gates, parse_gate
from llmops_evaluation import repository
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.triggers import TRIGGERS, target_of_model_version
from llmops_schemas import CloudEvent
from llmops_schemas.events import EvaluationRunRequested, EvaluationSuiteCreated, ModelVersionRegistered
from llmops_schemas.events.evaluation import SuiteRef, Target
from llmops_schemas.events.training import BaseModelRef, DatasetRef, PromptRef

#: Dataset formats a suite can evaluate generation on (``classification`` rows are a text and its label).
EVALUABLE_FORMATS = frozenset({"chat", "instruction", "text", "classification"})


class StoredSpec(BaseModel):
    """A suite version as stored: the request with its dataset and prompt versions resolved to ids, and each
    judge's rubric to its prompt version's template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    dataset: dict[str, Any]
    prompt: dict[str, Any] | None
    generation: dict[str, Any]
    scorers: list[dict[str, Any]]
    gates: list[dict[str, Any]]
    metrics: list[str]


def unprocessable(detail: str, field: str) -> Problem:
    return Problem(
        422,
        detail,
        type_="urn:llmops:problem:validation",
        errors=[{"field": field, "location": "body", "message": detail, "type": "value_error"}],
    )


# -- projections of other services' events (any order, any number of times: each converges) -----------------------
async def project_dataset_version(session: AsyncSession, values: dict[str, Any]) -> None:
    """A dataset version arrived (perhaps again, perhaps after its deprecation): stored once, its tombstone applied."""
    await repository.lock_dataset_version(session, values["version_id"])
    await repository.upsert_dataset_version(session, values)
    await repository.apply_deprecation(session, values["version_id"])


async def project_deprecation(
    session: AsyncSession, version_id: str, reason: str, deprecated_at: datetime, event_id: str
) -> None:
    """A deprecation arrived (perhaps before its version): kept as a tombstone, applied once the version is here."""
    await repository.lock_dataset_version(session, version_id)
    await repository.remember_deprecation(session, version_id, reason, deprecated_at, event_id)
    await repository.apply_deprecation(session, version_id)


def _base_model_ref(values: dict[str, Any]) -> BaseModelRef:
    return BaseModelRef(**{k: values.get(k) for k in BaseModelRef.model_fields})


async def project_model_version(
    session: AsyncSession, runtime: Runtime, settings: EvaluationSettings, event: CloudEvent, v: ModelVersionRegistered
) -> None:
    """A model version was registered: remember it, then run the suites it triggers (once per event)."""
    await repository.insert_model_version(
        session,
        {
            "model_version_id": v.model_version_id,
            "project": v.project,
            "name": v.name,
            "version": v.version,
            "kind": v.kind,
            "manifest_sha256": v.manifest_sha256,
            "base_model": _base_model_ref(v.lineage.get("base_model") or {}).model_dump(mode="json"),
            "registered_at": event.time,
        },
    )
    await run_triggered(session, runtime, settings, event, project=v.project, model_name=v.name)


async def run_triggered(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    event: CloudEvent,
    *,
    project: str,
    model_name: str,
) -> list[str]:
    """Start a run of every suite (its latest version) that has ``model_name`` attached and ``event``'s type among
    its triggers, on the version :data:`TRIGGERS` says the event is about; keyed on the event id, so a redelivered
    event starts nothing new. Returns the runs started."""
    target_of = TRIGGERS.get(event.type)
    if target_of is None:
        return []
    started = []
    for suite in await repository.latest_suite_versions_triggered_by(session, project, model_name, event.type):
        target = await target_of(session, event)
        if target is None:
            continue
        run = await _record_run(
            session,
            runtime,
            settings,
            suite,
            target,
            project=project,
            pool=settings.default_pool,
            trigger=event.type,
            trigger_key=f"event:{event.id}",
            actor=Actor(subject=f"trigger:{event.type}"),
        )
        if run is not None:
            started.append(run)
    return started


# -- suites ------------------------------------------------------------------------------------------------------
async def create_suite_version(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    *,
    project: str,
    body: dict[str, Any],
    actor: Actor,
) -> Row:
    """Check a suite against the projections and store it as the next version of its name (the first creates it)."""
    dataset = await repository.find_dataset_version(
        session, project, body["dataset"]["name"], body["dataset"]["version"]
    )
    if dataset is None:
        raise unprocessable(
            f"no dataset version {body['dataset']['name']!r} v{body['dataset']['version']} in project {project!r}",
            "dataset",
        )
    if dataset.deprecated:
        raise unprocessable(
            f"dataset {dataset.name!r} v{dataset.version} is deprecated ({dataset.deprecated_reason})", "dataset"
        )
    split_rows = _split_rows(dataset, body["dataset"]["split"])
    if split_rows == 0:
        raise unprocessable(
            f"the {body['dataset']['split']!r} split of dataset {dataset.name!r} v{dataset.version} is empty",
            "dataset.split",
        )
    if split_rows is not None and split_rows > settings.max_examples:
        raise unprocessable(
            f"the split holds {split_rows} rows; a suite evaluates at most {settings.max_examples}", "dataset.split"
        )
    if body["generation"]["max_new_tokens"] > settings.max_new_tokens_limit:
        raise unprocessable(f"max_new_tokens is at most {settings.max_new_tokens_limit}", "generation.max_new_tokens")
    prompt = None
    if body.get("prompt") is not None:
        prompt = await repository.find_prompt_version(
            session, project, body["prompt"]["name"], body["prompt"]["version"]
        )
        if prompt is None:
            raise unprocessable(
                f"no prompt version {body['prompt']['name']!r} v{body['prompt']['version']} in project {project!r}",
                "prompt",
            )
    scorers, metrics = await _checked_scorers(session, settings, project, body["scorers"])
    gates = _checked_gates(body.get("gates", []), metrics)
    for index, trigger in enumerate(body["triggers"]):
        if trigger not in TRIGGERS:
            raise unprocessable(
                f"{trigger!r} cannot trigger a run; known triggers: {', '.join(sorted(TRIGGERS))}", f"triggers[{index}]"
            )
    spec = StoredSpec(
        description=body.get("description", ""),
        dataset=_dataset_ref(dataset, body["dataset"]["split"]).model_dump(mode="json"),
        prompt=None if prompt is None else _prompt_ref(prompt).model_dump(mode="json"),
        generation=dict(body["generation"]),
        scorers=scorers,
        gates=gates,
        metrics=sorted(metrics),
    )
    await repository.lock_suite_name(session, project, body["name"])
    suite = await repository.find_suite(session, project, body["name"])
    if suite is None:
        suite_id = str(uuid.uuid4())
        await repository.insert_suite(
            session, {"id": suite_id, "project": project, "name": body["name"], "created_by": actor.subject}
        )
    else:
        suite_id = suite.id
    version = await repository.next_suite_version(session, suite_id)
    version_id = str(uuid.uuid4())
    stored = spec.model_dump(mode="json")
    await repository.insert_suite_version(
        session,
        {
            "id": version_id,
            "suite_id": suite_id,
            "project": project,
            "version": version,
            "spec": stored,
            "models": sorted(set(body.get("models", []))),
            "triggers": sorted(set(body["triggers"])),
            "created_by": actor.subject,
        },
    )
    payload = EvaluationSuiteCreated(
        suite_id=suite_id,
        version_id=version_id,
        project=project,
        name=body["name"],
        version=version,
        spec={**stored, "models": sorted(set(body.get("models", []))), "triggers": sorted(set(body["triggers"]))},
        created_by=actor.subject,
    )
    await add_to_outbox(session, runtime.event(payload, subject=suite_id, actor=actor, project=project))
    return await repository.get_suite_version(session, version_id)


def _split_rows(dataset: Row, split: str) -> int | None:
    counts = (dataset.splits or {}).get("counts")
    if isinstance(counts, dict) and split in counts:
        return int(counts[split])
    return None


async def _checked_scorers(
    session: AsyncSession, settings: EvaluationSettings, project: str, configs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], set[str]]:
    """The scorers' configurations (each judge's rubric resolved to its prompt version's template) and the metric
    names they compute; 422 naming ``scorers[i]`` for the first that cannot be built."""
    resolved = []
    for index, config in enumerate(configs):
        field = f"scorers[{index}]"
        if config.get("type") == "judge":
            config = await _resolved_judge(session, settings, project, config, field)
        try:
            (parsed,) = parse_scorer_configs([config])
            (scorer,) = build_scorers([parsed])
        except (ValidationError, ValueError, LookupError, TypeError) as exc:
            raise unprocessable(f"{field}: {_first_error(exc)}", field) from exc
        resolved.append(parsed.model_dump(mode="json"))
    metrics: set[str] = set()
    for config in resolved:
        (scorer,) = build_scorers(parse_scorer_configs([config]))
        metrics.update(scorer.metrics)
    return resolved, metrics


async def _resolved_judge(
    session: AsyncSession, settings: EvaluationSettings, project: str, config: dict[str, Any], field: str
) -> dict[str, Any]:
    """A judge names its rubric as a prompt version (``rubric_prompt: {name, version}``); the stored configuration
    holds that version's template, so a run reads nothing else. Its endpoint must be an allowed one."""
    config = dict(config)
    wanted = config.pop("rubric_prompt", None)
    if (
        not isinstance(wanted, dict)
        or not isinstance(wanted.get("name"), str)
        or not isinstance(wanted.get("version"), int)
    ):
        raise unprocessable(f"{field}: a judge names its rubric as rubric_prompt {{name, version}}", field)
    prompt = await repository.find_prompt_version(session, project, wanted["name"], wanted["version"])
    if prompt is None:
        raise unprocessable(
            f"{field}: no prompt version {wanted['name']!r} v{wanted['version']} in project {project!r}", field
        )
    check_endpoint(settings, str(config.get("endpoint", "")), f"{field}.endpoint")
    config["rubric"] = prompt.template
    return config


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"][1:]) or "config"
        return f"{where}: {error['msg']}"
    return str(exc)


def _checked_gates(gates: list[Any], metrics: set[str]) -> list[dict[str, Any]]:
    parsed = []
    for index, gate in enumerate(gates):
        try:
            parsed.append(parse_gate(gate))
        except ValueError as exc:
            raise unprocessable(f"gates[{index}]: {exc}", f"gates[{index}]") from exc
    for message in check_gates(parsed, metrics):
        index = message.split("]", 1)[0].split("[")[-1] if message.startswith("gates[") else "0"
        raise unprocessable(message, f"gates[{index}]")
    return [rule.model_dump(mode="json") for rule in parsed]


def check_endpoint(settings: EvaluationSettings, url: str, field: str) -> str:
    """An endpoint a run or judge may call: http(s), no credentials in it, and a host the settings allow."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise unprocessable(f"{field} must be an http(s) URL", field)
    if parts.username or parts.password:
        raise unprocessable(f"{field} must not carry credentials (name an api_key_env instead)", field)
    allowed = settings.allowed_endpoint_hosts
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if allowed and host not in allowed and parts.hostname not in allowed:
        raise unprocessable(f"{field}: host {host!r} is not among the allowed endpoint hosts", field)
    return url


def _dataset_ref(dataset: Row, split: str) -> DatasetRef:
    return DatasetRef(
        dataset_id=dataset.dataset_id,
        version_id=dataset.version_id,
        name=dataset.name,
        version=dataset.version,
        format=dataset.format,
        uri=dataset.uri,
        sha256=dataset.sha256,
        splits=dataset.splits,
        split=split,
    )


def _prompt_ref(prompt: Row) -> PromptRef:
    return PromptRef(
        prompt_id=prompt.prompt_id,
        version_id=prompt.version_id,
        name=prompt.name,
        version=prompt.version,
        template=prompt.template,
        hash=prompt.hash,
    )


async def get_suite_version(session: AsyncSession, project: str, name: str, version: int | None) -> Row:
    row = await repository.find_suite_version(session, project, name, version)
    if row is None:
        which = "any version" if version is None else f"version {version}"
        raise Problem(404, f"no suite {name!r} ({which}) in project {project!r}")
    return row


# -- runs --------------------------------------------------------------------------------------------------------
async def request_run(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    *,
    project: str,
    body: dict[str, Any],
    actor: Actor,
) -> Row:
    """Check a run request, record it and publish it to its pool."""
    if body["pool"] not in settings.pools:
        raise unprocessable(f"unknown pool {body['pool']!r}; pools: {', '.join(sorted(settings.pools))}", "pool")
    suite = await repository.find_suite_version(session, project, body["suite"], body.get("suite_version"))
    if suite is None:
        which = "" if body.get("suite_version") is None else f" v{body.get('suite_version')}"
        raise unprocessable(f"no suite {body['suite']!r}{which} in project {project!r}", "suite")
    target = await resolve_target(session, settings, project, body)
    run_id = await _record_run(
        session,
        runtime,
        settings,
        suite,
        target,
        project=project,
        pool=body["pool"],
        trigger="api",
        trigger_key=f"request:{uuid.uuid4()}",
        actor=actor,
    )
    assert run_id is not None  # a fresh key never collides
    return await repository.get_run(session, run_id)


async def resolve_target(
    session: AsyncSession, settings: EvaluationSettings, project: str, body: dict[str, Any]
) -> Target:
    chosen = [name for name in ("model", "base_model", "endpoint") if body.get(name) is not None]
    if len(chosen) != 1:
        raise unprocessable("name exactly one of model, base_model and endpoint", "model")
    if body.get("endpoint") is not None:
        url = check_endpoint(settings, body["endpoint"]["url"], "endpoint.url")
        return Target(kind="endpoint", endpoint=url, endpoint_model=body["endpoint"].get("model"))
    if body.get("base_model") is not None:
        base = await repository.find_base_model(session, project, body["base_model"])
        if base is None:
            raise unprocessable(f"no base model named {body['base_model']!r} in project {project!r}", "base_model")
        return Target(kind="base_model", model_name=base.name, base_model=_base_model_ref(base._asdict()))
    assert body.get("model") is not None
    return await model_version_target(
        session, project, body["model"]["name"], body["model"].get("version"), body["model"].get("alias")
    )


async def model_version_target(
    session: AsyncSession, project: str, name: str, version: int | None, alias: str | None
) -> Target:
    if (version is None) == (alias is None):
        raise unprocessable("name the model's version or its alias (one of them)", "model.version")
    if alias is not None:
        row = await repository.find_alias(session, project, name, alias)
        if row is None:
            raise unprocessable(f"model {name!r} has no alias {alias!r} in project {project!r}", "model.alias")
        version = row.version
    assert version is not None
    model = await repository.find_model_version(session, project, name, version)
    if model is None:
        raise unprocessable(f"no model version {name!r} v{version} in project {project!r}", "model")
    return target_of_model_version(model)


async def _record_run(
    session: AsyncSession,
    runtime: Runtime,
    settings: EvaluationSettings,
    suite: Row,
    target: Target,
    *,
    project: str,
    pool: str,
    trigger: str,
    trigger_key: str,
    actor: Actor,
) -> str | None:
    """Record a run of ``suite`` (a suite version row) and publish its request; None when the suite version already
    has a run for ``trigger_key``."""
    spec = StoredSpec.model_validate(suite.spec)
    run_id = str(uuid.uuid4())
    payload = EvaluationRunRequested(
        run_id=run_id,
        project=project,
        pool=pool,
        suite=SuiteRef(suite_id=suite.suite_id, version_id=suite.id, name=suite.name, version=suite.version),
        dataset=DatasetRef.model_validate(spec.dataset),
        prompt=None if spec.prompt is None else PromptRef.model_validate(spec.prompt),
        generation=spec.generation,
        scorers=spec.scorers,
        target=target,
        trigger=trigger,
        requested_by=actor.subject,
    )
    recorded = await repository.insert_run(
        session,
        {
            "id": run_id,
            "project": project,
            "suite_version_id": suite.id,
            "status": "queued",
            "pool": pool,
            "target": target.model_dump(mode="json"),
            "model_name": target.model_name if target.kind == "model_version" else None,
            "model_version": target.model_version,
            "model_version_id": target.model_version_id,
            "trigger": trigger,
            "trigger_key": trigger_key,
            "request": payload.model_dump(mode="json"),
            "requested_by": actor.subject,
        },
    )
    if not recorded:
        return None
    await add_to_outbox(session, runtime.event(payload, subject=run_id, actor=actor, project=project))
    return run_id


async def get_run(session: AsyncSession, project: str, run_id: str) -> Row:
    run = await repository.find_run(session, project, run_id)
    if run is None:
        raise Problem(404, f"no run {run_id} in project {project!r}")
    return run
