"""Batched generation with a local model (a base model, with a LoRA adapter or not), as the generation process runs
it: inputs tokenized once, sorted by length so a batch pads little, left-padded, generated a batch at a time with
``model.generate`` (greedy at temperature 0, else sampled with the run's seed), outputs cut at the first stop string.

Each example's latency is its batch's time divided by the batch's size: examples of a batch are generated together,
so that share is what one example cost, not a time anyone waited for it alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Input = str | list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class GenerationSpec:
    """How to generate: the suite's generation parameters and the worker's batch size."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    batch_size: int = 16
    min_new_tokens: int = 0  # benchmarks only: outputs of a fixed length

    @classmethod
    def of(cls, generation: dict[str, Any], batch_size: int) -> GenerationSpec:
        return cls(
            max_new_tokens=int(generation.get("max_new_tokens", 64)),
            temperature=float(generation.get("temperature", 0.0)),
            top_p=float(generation.get("top_p", 1.0)),
            stop=tuple(generation.get("stop") or ()),
            seed=int(generation.get("seed", 0)),
            batch_size=batch_size,
        )


@dataclass(frozen=True, slots=True)
class Generated:
    """One example's output: its text (cut at the first stop string), new tokens and share of its batch's time."""

    index: int
    output: str | None
    tokens: int = 0
    latency_ms: float | None = None
    error: str | None = None


def load_model(model_dir: Path, adapter_dir: Path | None = None) -> tuple[Any, Any]:
    """The model (with the adapter on it) in evaluation mode, and its tokenizer (the adapter's when it has one)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    own_tokenizer = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir if own_tokenizer else model_dir), local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return model, tokenizer


def encode(tokenizer: Any, value: Input) -> list[int]:
    """An input's token ids: a chat through the tokenizer's chat template, ready for the assistant's turn."""
    if isinstance(value, str):
        return list(tokenizer(value)["input_ids"])
    text = tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def planned_batches(encoded: Sequence[tuple[int, list[int]]], batch_size: int) -> list[list[tuple[int, list[int]]]]:
    """Examples sorted by input length (longest first: a memory problem shows at once), cut into batches."""
    ordered = sorted(encoded, key=lambda item: (-len(item[1]), item[0]))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    end = min((found for s in stop if (found := text.find(s)) >= 0), default=len(text))
    return text[:end]


class Generator:
    """A loaded model generating batches of token ids with one :class:`GenerationSpec`."""

    def __init__(self, model: Any, tokenizer: Any, spec: GenerationSpec) -> None:
        self.model, self.tokenizer, self.spec = model, tokenizer, spec
        self.stop_strings = bool(spec.stop)  # transformers' stop_strings; post-processing alone if it fails

    def _kwargs(self) -> dict[str, Any]:
        spec, tokenizer = self.spec, self.tokenizer
        kwargs: dict[str, Any] = {
            "max_new_tokens": spec.max_new_tokens,
            "min_new_tokens": spec.min_new_tokens or None,
            "pad_token_id": tokenizer.pad_token_id,
            "do_sample": spec.temperature > 0,
        }
        if spec.temperature > 0:
            kwargs |= {"temperature": spec.temperature, "top_p": spec.top_p}
        else:  # greedy: no sampling parameter of the model's generation config applies
            kwargs |= {"temperature": None, "top_p": None, "top_k": None}
        if self.stop_strings:
            kwargs |= {"stop_strings": list(spec.stop), "tokenizer": tokenizer}
        return kwargs

    def batch(self, batch: Sequence[tuple[int, list[int]]], number: int) -> list[Generated]:
        import torch

        padded = self.tokenizer.pad({"input_ids": [ids for _, ids in batch]}, return_tensors="pt")
        if self.spec.temperature > 0:
            torch.manual_seed(self.spec.seed + number)  # a batch's samples do not depend on the batches before it
        started = time.perf_counter()
        with torch.inference_mode():
            try:
                out = self.model.generate(**padded, **self._kwargs())
            except Exception:
                if not self.stop_strings:
                    raise
                self.stop_strings = False  # a tokenizer transformers cannot match stop strings with
                out = self.model.generate(**padded, **self._kwargs())
        latency_ms = (time.perf_counter() - started) * 1000 / len(batch)
        new = out[:, padded["input_ids"].shape[1] :].tolist()
        return [self._decoded(index, ids, latency_ms) for (index, _), ids in zip(batch, new, strict=True)]

    def _decoded(self, index: int, ids: list[int], latency_ms: float) -> Generated:
        # new tokens: up to the first end of sequence (included); after a stop, generate fills the row with padding
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        count = next((position + 1 for position, token in enumerate(ids) if token == eos), len(ids))
        while count > 0 and ids[count - 1] == pad and pad != eos:
            count -= 1
        text = self.tokenizer.decode(ids[:count], skip_special_tokens=True)
        return Generated(index, cut_at_stop(text, self.spec.stop), count, latency_ms)


def generate_batches(
    model: Any,
    tokenizer: Any,
    inputs: Sequence[tuple[int, Input]],
    spec: GenerationSpec,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[list[Generated]]:
    """Each batch's outputs as it is done (in length order; callers restore the examples' order by index)."""
    generator = Generator(model, tokenizer, spec)
    encoded, unusable = [], []
    for index, value in inputs:
        try:
            encoded.append((index, encode(tokenizer, value)))
        except Exception as exc:  # e.g. a chat the tokenizer's template refuses: that example's error
            unusable.append(Generated(index, None, error=f"the input cannot be tokenized: {exc!r}"[:500]))
    if unusable:
        yield unusable
    for number, batch in enumerate(planned_batches(encoded, spec.batch_size)):
        if should_stop():
            return
        yield generator.batch(batch, number)
