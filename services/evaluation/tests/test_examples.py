"""Examples from a split's rows: each dataset format's input and reference, the prompt version's rendering, and rows
that cannot become an example recorded as errors of their own."""

from __future__ import annotations

import orjson

from llmops.prompts import PromptTemplate
from llmops_evaluation.examples import Example, to_examples


def lines(*rows) -> list[bytes]:
    return [orjson.dumps(row) if not isinstance(row, bytes) else row for row in rows]


class TestFormats:
    def test_an_instruction_row_is_its_prompt_and_completion(self):
        examples, errors = to_examples(lines({"prompt": "2+2?", "completion": "4"}), "instruction")
        assert examples == [Example(0, "2+2?", "4")] and errors == []

    def test_an_instruction_row_is_rendered_through_the_prompt_version(self):
        template = PromptTemplate(kind="text", text="Q: {{ prompt }}\nA:", variables={"prompt": {"type": "string"}})
        examples, _ = to_examples(lines({"prompt": "2+2?", "completion": "4"}), "instruction", template)
        assert examples == [Example(0, "Q: 2+2?\nA:", "4")]

    def test_a_chat_row_is_the_conversation_before_the_last_assistant_message(self):
        messages = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
            {"role": "assistant", "content": "goodbye"},
        ]
        examples, _ = to_examples(lines({"messages": messages}), "chat")
        assert examples == [Example(0, messages[:3], "goodbye")]

    def test_a_text_row_has_no_reference(self):
        assert to_examples(lines({"text": "once upon"}), "text")[0] == [Example(0, "once upon", None)]

    def test_a_classification_row_has_its_label_as_reference(self):
        assert to_examples(lines({"text": "great!", "label": 1}), "classification")[0] == [Example(0, "great!", "1")]


class TestUnusableRows:
    def test_are_errors_with_their_index_and_the_other_rows_stay_examples(self):
        examples, errors = to_examples(
            lines({"prompt": "a", "completion": "b"}, {"prompt": "no completion"}, b"{not json", {"prompt": 3}),
            "instruction",
        )
        assert [e.index for e in examples] == [0]
        assert [(e.index, e.error) for e in errors[:1]] == [(1, "a 'instruction' row needs the field 'completion'")]
        assert [e.index for e in errors] == [1, 2, 3] and "not JSON" in errors[1].error

    def test_a_chat_without_an_assistant_answer_is_an_error(self):
        _, errors = to_examples(lines({"messages": [{"role": "user", "content": "hi"}]}), "chat")
        assert "no assistant message" in errors[0].error
