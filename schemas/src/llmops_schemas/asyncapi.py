"""The platform's event contracts as an AsyncAPI 3.0 document: every topic a channel, every event type a message whose
payload is the CloudEvents envelope with that type and that payload (the JSON Schemas of ``schemas/json``, by
reference), every channel an operation the platform sends on. For other systems' publishers and consumers, and for
tools that read AsyncAPI (code generators, catalogues, the AsyncAPI studio).

``python -m llmops_schemas.asyncapi FILE`` writes it (``schemas/asyncapi.json``); ``--check`` exits 1 when FILE is
stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from llmops_schemas import topics
from llmops_schemas.envelope import PAYLOADS

#: Where the document points for the JSON Schemas, relative to itself.
SCHEMAS_DIR = "json"

TOPICS: dict[str, str] = {
    topics.DATASETS: "Datasets, their versions, imports and deprecations.",
    topics.PROMPTS: "Prompt templates, their versions and labels.",
    topics.TRAINING: "Training jobs, from request to completion, failure, cancellation or requeue.",
    topics.MODELS: "Base models, model versions and their aliases (the registry).",
    topics.EVALUATIONS: "Evaluation suites, runs, gate decisions and their overrides.",
    topics.DEPLOYMENTS: "Deployments, their gate overrides, routes, API keys and budgets.",
    topics.INFERENCE: "One event per served request (from the platform's gateway or another publisher of the schema).",
    topics.FEEDBACK: "Feedback on served requests and model versions.",
    topics.MONITORING: "Anomalies, drift, alerts and the policies that act on them.",
    topics.SECURITY: "Access denials.",
    topics.AUDIT: "The audit log's signed checkpoints.",
    topics.PLATFORM: "Platform operations: dead letters replayed, probes.",
}

DEAD_LETTERS = (
    "What a consumer could not process: the original record's key, bytes and headers (each header as"
    " `x-dlq-original-<name>`), with `x-dlq-reason` (not_json, invalid_envelope, unknown_type, unsupported_version,"
    " invalid_data, handler_failed),"
    " `x-dlq-error`, `x-dlq-consumer`, `x-dlq-topic`, `x-dlq-partition`, `x-dlq-offset` and `x-dlq-attempts` headers."
    " `llmops dlq` lists and replays them."
)


def _version() -> str:
    try:
        return version("llmops-schemas")
    except PackageNotFoundError:  # pragma: no cover (run from a source tree)
        return "0.0.0"


def render() -> dict[str, Any]:
    """The AsyncAPI document (a JSON-ready mapping)."""
    by_topic: dict[str, list[str]] = defaultdict(list)
    messages: dict[str, Any] = {}
    for event_type, model in sorted(PAYLOADS.items()):
        if not model.__module__.startswith("llmops_schemas."):
            continue  # payloads registered by tests or plugins are not platform contracts
        by_topic[model.topic].append(event_type)
        doc = (model.__doc__ or "").strip()
        messages[event_type] = {
            "name": event_type,
            "title": event_type,
            "summary": doc.split("\n\n")[0].replace("\n", " ") if doc else event_type,
            "contentType": "application/cloudevents+json",
            "headers": {"$ref": "#/components/schemas/KafkaHeaders"},
            "payload": {
                "allOf": [
                    {"$ref": f"{SCHEMAS_DIR}/cloudevent.schema.json"},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "data": {"$ref": f"{SCHEMAS_DIR}/{event_type}.v{model.schema_version}.schema.json"},
                        },
                    },
                ]
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": "the event's subject"}}},
        }
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in (*topics.DOMAIN_TOPICS, topics.DEAD_LETTER):
        channel = topic.replace(".", "_")
        if topic == topics.DEAD_LETTER:
            channels[channel] = {
                "address": topic,
                "description": DEAD_LETTERS,
                "messages": {"deadLetter": {"$ref": "#/components/messages/deadLetter"}},
            }
        else:
            channels[channel] = {
                "address": topic,
                "description": TOPICS[topic] + " Keyed by the event's subject: an aggregate's events stay in order.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in by_topic.get(topic, [])},
            }
        operations[f"send_{channel}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"The platform publishes on {topic}"
            + (" (its services through their outboxes)." if topic != topics.DEAD_LETTER else " (its consumers)."),
        }
    messages["deadLetter"] = {
        "name": "deadLetter",
        "title": "dead letter",
        "summary": "A record a consumer could not process, as it was, with the reason in its headers.",
        "payload": {"description": "the original record's bytes, unchanged"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "llmops platform events",
            "version": _version(),
            "description": (
                "Every event is a CloudEvents 1.0 envelope in JSON (structured mode) whose `data` is the event type's"
                " payload; `schemaversion` names the payload's version. JSON Schemas of the envelope and of every"
                " payload are in `json/` beside this document."
            ),
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "the broker `llmops infra up` starts (LLMOPS_KAFKA__BOOTSTRAP_SERVERS elsewhere)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "KafkaHeaders": {
                    "type": "object",
                    "description": "Kafka record headers the platform may set (a replayed dead letter's among them).",
                    "properties": {
                        "x-llmops-replay-of": {"type": "string", "description": "the dead letter a replay came from"},
                        "x-llmops-replayed-at": {"type": "string", "format": "date-time"},
                    },
                }
            },
        },
    }


def text() -> str:
    return json.dumps(render(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed document is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = not args.file.is_file() or args.file.read_text() != text()
        if stale:
            print(f"stale: {args.file} (run: make schemas)", file=sys.stderr)
        return 1 if stale else 0
    args.file.write_text(text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
