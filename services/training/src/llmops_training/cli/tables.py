"""The training commands' tables and lines for people (``--json`` prints what the API returns instead)."""

from __future__ import annotations

import json
from typing import Any

from rich.filesize import decimal
from rich.markup import escape
from rich.table import Table

from llmops.cli_kit import when

#: Metrics shown with a job or a model version (the loss history and the spec are long; --json has them).
SHOWN_METRICS = (
    "final_loss",
    "train_loss",
    "steps",
    "epochs",
    "tokens",
    "tokens_per_second",
    "runtime_seconds",
    "wall_seconds",
    "trainable_parameters",
    "total_parameters",
)


def number(value: Any) -> str:
    """A metric for people: floats to 4 significant digits, big integers with separators."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def steps_text(job: dict[str, Any]) -> str:
    return f"{job['step']}/{job['max_steps']}" if job.get("max_steps") else str(job.get("step") or 0)


def base_models_table(items: list[dict[str, Any]]) -> Table:
    table = Table("name", "source", "architecture", "parameters", "size", "content / hub id", "created", "by")
    for m in items:
        if m["source"] == "hub":
            origin = f"{m['hub_id']}@{m.get('revision') or 'main'}"
        else:
            origin = f"sha256 {(m.get('manifest_sha256') or '')[:16]}…"
        table.add_row(
            escape(m["name"]),
            m["source"],
            escape(m.get("architecture") or ""),
            number(m.get("parameters")),
            decimal(m["size_bytes"]) if m.get("size_bytes") else "",
            escape(origin),
            when(m["created_at"]),
            escape(m["created_by"]),
        )
    return table


def models_table(items: list[dict[str, Any]]) -> Table:
    table = Table("model", "versions", "latest", "kind", "final loss", "aliases", "latest created")
    for model in items:
        latest = model["versions"][-1]
        aliases = ", ".join(f"{a['alias']}→v{a['version']}" for a in model["aliases"])
        table.add_row(
            escape(model["name"]),
            str(len(model["versions"])),
            f"v{latest['version']}",
            latest["kind"],
            number((latest.get("metrics") or {}).get("final_loss")),
            escape(aliases),
            when(latest["created_at"]),
        )
    return table


def versions_table(model: dict[str, Any]) -> Table:
    aliases: dict[int, list[str]] = {}
    for a in model["aliases"]:
        aliases.setdefault(a["version"], []).append(a["alias"])
    table = Table("version", "kind", "aliases", "final loss", "steps", "artifacts sha256", "job", "created")
    for v in model["versions"]:
        metrics = v.get("metrics") or {}
        table.add_row(
            str(v["version"]),
            v["kind"] + (" (+merged)" if v.get("merged_manifest_sha256") else ""),
            escape(", ".join(aliases.get(v["version"], []))),
            number(metrics.get("final_loss")),
            number(metrics.get("steps")),
            v["manifest_sha256"][:16] + "…",
            v["job_id"],
            when(v["created_at"]),
        )
    return table


def lineage_table(name: str, version: str, lineage: dict[str, Any], metrics: dict[str, Any] | None) -> Table:
    """Where a model version came from: base model, data, prompt, method, settings, software and results."""
    table = Table("", "", title=f"lineage of {name} {version}", title_justify="left", show_header=False)
    base = lineage.get("base_model") or {}
    if base.get("source") == "hub":
        origin = f"{base.get('hub_id')} (hub) at revision {base.get('resolved_revision') or base.get('revision')}"
    else:
        origin = f"uploaded, manifest sha256 {base.get('resolved_revision') or base.get('manifest_sha256')}"
    table.add_row("base model", escape(f"{base.get('name')}: {origin}"))
    dataset = lineage.get("dataset") or {}
    table.add_row(
        "dataset",
        escape(f"{dataset.get('name')} v{dataset.get('version')} ({dataset.get('split', 'train')} split)"),
    )
    table.add_row("dataset sha256", escape(str(dataset.get("sha256"))))
    now = lineage.get("dataset_now") or {}
    if now.get("deprecated"):
        table.add_row("[red]dataset now[/red]", escape(f"deprecated: {now.get('deprecated_reason')}"))
    prompt = lineage.get("prompt")
    table.add_row(
        "prompt",
        "none" if not prompt else escape(f"{prompt.get('name')} v{prompt.get('version')} ({prompt.get('hash', '')})"),
    )
    table.add_row("method", escape(str(lineage.get("method"))))
    hyperparameters = lineage.get("hyperparameters") or {}
    settings = ", ".join(f"{k}={number(v)}" for k, v in sorted(hyperparameters.items()) if v is not None)
    table.add_row("hyperparameters", escape(settings))
    table.add_row("job", escape(str(lineage.get("job_id"))))
    table.add_row("platform version", escape(str(lineage.get("platform_version"))))
    libraries = lineage.get("libraries") or {}
    if libraries:
        table.add_row("libraries", escape(", ".join(f"{k} {v}" for k, v in sorted(libraries.items()))))
    for key in SHOWN_METRICS:
        if (metrics or {}).get(key) is not None:
            table.add_row(key.replace("_", " "), number(metrics[key]))
    return table


def job_table(job: dict[str, Any]) -> Table:
    table = Table("", "", title=f"training job {job['id']}", title_justify="left", show_header=False)
    table.add_row("status", status_text(job["status"]))
    table.add_row("model", escape(job["model_name"]))
    table.add_row("method / pool", f"{job['method']} / {escape(job['pool'])}")
    table.add_row("step", steps_text(job))
    progress = job.get("progress") or {}
    if progress.get("loss") is not None:
        table.add_row("loss", number(progress["loss"]))
    if progress.get("tokens_per_second"):
        table.add_row("tokens/s", number(progress["tokens_per_second"]))
    table.add_row("requested", f"{when(job['created_at'])} by {escape(job['requested_by'])}")
    if job.get("started_at"):
        table.add_row("started", f"{when(job['started_at'])} on {escape(job.get('worker') or '')}")
    if job.get("attempt", 0) > 1 or job.get("resumed_from_step"):
        table.add_row("attempt", f"{job['attempt']} (resumed from step {job.get('resumed_from_step')})")
    if job.get("finished_at"):
        table.add_row("finished", when(job["finished_at"]))
    if job.get("cancel_requested_by"):
        table.add_row("cancelled by", escape(job["cancel_requested_by"]))
    for key in SHOWN_METRICS:
        if (job.get("metrics") or {}).get(key) is not None:
            table.add_row(key.replace("_", " "), number(job["metrics"][key]))
    if job.get("error"):
        table.add_row("[red]error[/red]", escape(job["error"]))
    return table


def jobs_table(items: list[dict[str, Any]]) -> Table:
    table = Table("id", "model", "status", "method", "pool", "step", "loss", "requested", "by")
    for job in items:
        table.add_row(
            job["id"],
            escape(job["model_name"]),
            status_text(job["status"]),
            job["method"],
            escape(job["pool"]),
            steps_text(job),
            number((job.get("progress") or {}).get("loss")),
            when(job["created_at"]),
            escape(job["requested_by"]),
        )
    return table


STATUS_COLOURS = {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}


def status_text(status: str) -> str:
    colour = STATUS_COLOURS.get(status)
    return f"[{colour}]{status}[/{colour}]" if colour else status


def log_line(line: dict[str, Any]) -> str:
    level = line["level"]
    shown = f"[red]{level}[/red]" if level == "error" else level
    worker = " " + escape(f"[{line['worker']}]") if line.get("worker") else ""
    return f"{when(line['at'])} {shown}{worker} {escape(line['message'])}"
