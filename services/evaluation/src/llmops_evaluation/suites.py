"""Suites: immutable versions of what a run is made of (dataset version and split, prompt version, generation
parameters, scorers, gates, attached models, triggers), checked against the projections when they are stored. Errors
are RFC 9457 problems; a 422 names the field it is about."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.outbound import OutboundURLError, check_outbound_url
from llmops.runtime import Actor, Runtime
from llmops.scoring import build_scorers, parse_scorer_configs
from llmops.scoring.gates import check_gates, parse_gate
from llmops_evaluation import repository
from llmops_evaluation.settings import EvaluationSettings
from llmops_evaluation.triggers import TRIGGERS
from llmops_schemas.events import EvaluationSuiteCreated
from llmops_schemas.events.training import DatasetRef, PromptRef

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
    resolved, metrics = [], set()
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
    try:
        return check_outbound_url(
            url, settings.allowed_endpoint_hosts, field, credentials_hint="name an api_key_env instead"
        )
    except OutboundURLError as exc:
        raise unprocessable(str(exc), field) from exc


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
