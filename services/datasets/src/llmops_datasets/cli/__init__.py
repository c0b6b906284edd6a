"""`llmops datasets ...`: create, upload, list, show, preview, download and deprecate datasets, all through the
datasets service's HTTP API (no business logic here: the service validates, cleans and decides)."""

from llmops_datasets.cli.commands import app

__all__ = ["app"]
