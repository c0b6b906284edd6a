"""``llmops deploy|routes|keys|chat|lineage ...``: deployments, routes, API keys and budgets through the deployment
service's HTTP API (``LLMOPS_CLIENT_DEPLOYMENT_URL``, ``LLMOPS_CLIENT_TOKEN``), and a chat through the gateway
(``LLMOPS_CLIENT_GATEWAY_URL``)."""

from __future__ import annotations

from llmops_deployment.cli.chat import chat_app
from llmops_deployment.cli.deploy import deploy_app
from llmops_deployment.cli.keys import keys_app
from llmops_deployment.cli.lineage import lineage_app
from llmops_deployment.cli.routes import routes_app

__all__ = ["chat_app", "deploy_app", "keys_app", "lineage_app", "routes_app"]
