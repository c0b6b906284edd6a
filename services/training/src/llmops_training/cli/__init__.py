"""`llmops models ...` and `llmops train ...`: base models, the model registry and training jobs, all through the
training service's HTTP API (``LLMOPS_CLIENT_TRAINING_URL``, ``LLMOPS_CLIENT_TOKEN``).

Nothing here imports torch or transformers at start (``llmops`` must stay fast): only ``models base tiny`` does,
when it runs.
"""

from llmops_training.cli.registry import models_app
from llmops_training.cli.train import train_app

__all__ = ["models_app", "train_app"]
