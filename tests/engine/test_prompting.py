"""Where the preference goes in the prompt, for every kind of template."""

import pytest
from conftest import make_tokenizer

from pjudge_core import InputError, combine_preferences, prompt_ids, prompt_text
from pjudge_core.engine.prompting import supports_system_turn

NO_SYSTEM_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def test_preference_goes_into_the_system_turn_when_the_template_has_one():
    tok = make_tokenizer()
    text = prompt_text(tok, "What is rain?", ["Be concise."])
    assert text.startswith("<|im_start|>system\nBe concise.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_preference_goes_before_the_query_when_the_template_rejects_system():
    tok = make_tokenizer(NO_SYSTEM_TEMPLATE)
    assert not supports_system_turn(tok)
    text = prompt_text(tok, "What is rain?", ["Be concise."])
    assert "<start_of_turn>user\nBe concise.\n\nWhat is rain?<end_of_turn>" in text


def test_models_without_a_chat_template_get_the_plain_text_fallback():
    tok = make_tokenizer(chat_template=None)
    assert prompt_text(tok, "What is rain?", ["Be concise."]) == "Be concise.\n\nUser: What is rain?\nAssistant:"
    assert prompt_text(tok, "What is rain?") == "User: What is rain?\nAssistant:"


def test_one_preference_direct_prompt_equals_the_role_prompt_and_several_are_combined():
    tok = make_tokenizer()
    assert combine_preferences(["Be concise."]) == "Be concise."
    both = combine_preferences(["Be concise.", "Be funny."])
    assert "1. Be concise." in both and "2. Be funny." in both
    assert prompt_ids(tok, "q", ["Be concise."]) == tok(prompt_text(tok, "q", ["Be concise."]), add_special_tokens=False)["input_ids"]


def test_empty_query_is_refused():
    with pytest.raises(InputError, match="query is empty"):
        prompt_ids(make_tokenizer(), "   ", ["Be concise."])
