"""Batched generation on the tiny model: greedy outputs do not depend on the batch they were in (left padding),
examples come back by index whatever the length order, stop strings cut the output, and generation in a child
process gives what it gives in-process."""

from __future__ import annotations

from llmops_evaluation.ml.generate import GenerationSpec, cut_at_stop, generate_batches, load_model, planned_batches
from llmops_evaluation.ml.process import generate_in_process

PROMPTS = [(i, "Question " + "very " * (i % 5) + f"long {i}?") for i in range(9)]


def outputs(batches) -> dict[int, str]:
    return {g.index: g.output for batch in batches for g in batch}


class TestPlanning:
    def test_batches_hold_inputs_of_similar_length_longest_first(self):
        encoded = [(0, [1]), (1, [1, 2, 3]), (2, [1, 2]), (3, [1, 2, 3, 4])]
        assert [[i for i, _ in b] for b in planned_batches(encoded, 2)] == [[3, 1], [2, 0]]

    def test_an_output_is_cut_at_the_first_stop_string(self):
        assert cut_at_stop("one. two\nthree", [".", "\n"]) == "one"
        assert cut_at_stop("no stop", ["#"]) == "no stop"


class TestGeneration:
    def test_greedy_outputs_are_the_same_in_any_batch_size(self, tiny_model):
        model, tokenizer = load_model(tiny_model)
        one = outputs(generate_batches(model, tokenizer, PROMPTS, GenerationSpec(max_new_tokens=6, batch_size=1)))
        four = outputs(generate_batches(model, tokenizer, PROMPTS, GenerationSpec(max_new_tokens=6, batch_size=4)))
        assert one == four and sorted(one) == list(range(9))

    def test_a_chat_input_goes_through_the_chat_template(self, tiny_model):
        model, tokenizer = load_model(tiny_model)
        chat = [(0, [{"role": "user", "content": "Hi!"}])]
        (batch,) = generate_batches(model, tokenizer, chat, GenerationSpec(max_new_tokens=4))
        assert batch[0].error is None and isinstance(batch[0].output, str) and 0 < batch[0].tokens <= 4

    def test_the_child_process_streams_each_batch_and_matches_in_process(self, tiny_model):
        model, tokenizer = load_model(tiny_model)
        spec = GenerationSpec(max_new_tokens=6, batch_size=4)
        expected = outputs(generate_batches(model, tokenizer, PROMPTS, spec))
        batches: list = []
        seconds = generate_in_process(tiny_model, None, PROMPTS, spec, on_batch=batches.append)
        assert seconds is not None and [len(b) for b in batches] == [4, 4, 1]
        assert outputs(batches) == expected

    def test_a_stop_asked_for_ends_the_child_before_the_end(self, tiny_model):
        batches: list = []
        spec = GenerationSpec(max_new_tokens=6, batch_size=2)
        seconds = generate_in_process(
            tiny_model, None, PROMPTS, spec, on_batch=batches.append, should_stop=lambda: bool(batches)
        )
        assert seconds is None and 1 <= len(batches) < 5
