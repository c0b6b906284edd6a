"""Imported once by the generation forkserver (see ``process``): the heavy libraries every generation child needs."""

import torch  # noqa: F401
from peft import PeftModel  # noqa: F401
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

from llmops.ml_runtime import quiet_libraries
from llmops_evaluation.ml import generate  # noqa: F401

quiet_libraries()
