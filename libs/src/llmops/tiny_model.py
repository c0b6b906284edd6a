"""A tiny, deterministic causal language model (byte-level BPE tokenizer + Llama) for tests, demos and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0..3, in this order

# Role headers as plain text; the assistant turn is wrapped in generation markers so assistant-only loss can work.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

DEFAULT_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "What is the capital of Germany? The capital of Germany is Berlin.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "A week has seven days, and a year has twelve months.",
    "Please summarize the following text in one sentence.",
    "Translate into French: good morning. Bonjour.",
    "The customer asked for a refund because the package arrived damaged.",
    "Our support team answers every question within one business day.",
    "To reset your password, open the settings page and choose security.",
    "Machine learning models learn patterns from examples.",
    "The train leaves the station at nine o'clock in the morning.",
    "She reads a book every evening before going to sleep.",
    "Numbers: one two three four five six seven eight nine ten 0 1 2 3 4 5 6 7 8 9.",
    "Question: how many legs does a spider have? Answer: eight.",
    "Instruction: write a short greeting. Response: Hello, nice to meet you!",
    "<|system|>\nYou are a helpful assistant.\n<|user|>\nHi!\n<|assistant|>\nHello! How can I help?\n",
    "Red, green, blue, yellow, orange, purple, black and white are colours.",
    "The meeting was moved to Thursday afternoon; everyone agreed.",
    "Fine-tuning adapts a pretrained model to a specific task with little data.",
)


def build_tiny_model(
    out_dir: Path,
    corpus: Iterable[str] | None = None,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE tokenizer on ``corpus``; save it with a randomly initialised small Llama to ``out_dir``.

    The directory holds a Hugging Face model (safetensors) and a fast tokenizer with bos/eos/unk/pad tokens and a chat
    template. The same arguments give byte-identical files, so the directory can be content-addressed.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from llmops.ml_runtime import quiet_libraries

    quiet_libraries()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    bpe = Tokenizer(models.BPE(unk_token=UNK))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknown tokens
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus if corpus is not None else DEFAULT_CORPUS), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD, model_max_length=2048
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
