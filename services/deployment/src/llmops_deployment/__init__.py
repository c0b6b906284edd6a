"""The deployment service: deployments of gated model versions, serving workers, routes, API keys, budgets and the
inference gateway."""
