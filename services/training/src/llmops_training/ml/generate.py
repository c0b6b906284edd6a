"""Greedy text generation from a local base model, optionally with a LoRA adapter: a smoke check of trained weights."""

from __future__ import annotations

from pathlib import Path


def generate(base_dir: Path, prompt: str, *, adapter_dir: Path | None = None, max_new_tokens: int = 20) -> str:
    """Generate greedily from ``prompt`` with the model in ``base_dir`` (plus the adapter in ``adapter_dir``).

    Returns only the new text, without special tokens.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops.ml_runtime import quiet_libraries

    quiet_libraries()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir or base_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
