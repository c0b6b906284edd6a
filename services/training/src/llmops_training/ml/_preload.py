"""Imported once by the training forkserver (see ``process``): the heavy libraries every training child needs."""

import torch  # noqa: F401
from peft import LoraConfig, get_peft_model  # noqa: F401
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401
from trl import SFTConfig, SFTTrainer  # noqa: F401

from llmops.ml_runtime import quiet_libraries
from llmops_training.ml import trainer  # noqa: F401

quiet_libraries()
