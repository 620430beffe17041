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


# ---------------------------------------------------------------- conversations
CHAT = [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is rain?"}]


@pytest.mark.parametrize("template", ["default", NO_SYSTEM_TEMPLATE, None])
def test_a_one_turn_conversation_prompts_token_for_token_as_its_query(template):
    tok = make_tokenizer() if template == "default" else make_tokenizer(chat_template=template)
    for prefs in ([], ["Be concise."], ["Be concise.", "Be funny."]):
        assert (prompt_ids(tok, [{"role": "user", "content": "What is rain?"}], prefs)
                == prompt_ids(tok, "What is rain?", prefs))


def test_a_conversation_keeps_its_turns_and_its_system_message_comes_before_the_preference():
    tok = make_tokenizer()
    text = prompt_text(tok, CHAT, ["Be concise."])
    assert text.startswith("<|im_start|>system\nYou are a tutor.\n\nBe concise.<|im_end|>")
    assert text.index("Hi") < text.index("Hello!") < text.index("What is rain?")
    assert text.endswith("<|im_start|>assistant\n")
    assert prompt_text(tok, CHAT).startswith("<|im_start|>system\nYou are a tutor.<|im_end|>")  # no preference


def test_without_a_system_turn_the_first_user_turn_carries_the_system_text_and_the_preference():
    tok = make_tokenizer(NO_SYSTEM_TEMPLATE)
    text = prompt_text(tok, CHAT, ["Be concise."])
    assert "<start_of_turn>user\nYou are a tutor.\n\nBe concise.\n\nHi<end_of_turn>" in text
    assert "<start_of_turn>user\nWhat is rain?<end_of_turn>" in text  # later user turns untouched


def test_the_plain_text_fallback_writes_every_turn():
    tok = make_tokenizer(chat_template=None)
    assert prompt_text(tok, CHAT, ["Be concise."]) == (
        "You are a tutor.\n\nBe concise.\n\nUser: Hi\nAssistant: Hello!\nUser: What is rain?\nAssistant:")


@pytest.mark.parametrize("messages, message", [
    ([], "non-empty list of messages"),
    ([{"role": "user"}], "Message 1 must have a role and a text content"),
    ([{"role": "tool", "content": "x"}], "Message 1 has role 'tool'"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "user", "content": "c"}],
     "Message 2 is a system message; only the first"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "must end with a non-empty user"),
    ([{"role": "system", "content": "a"}, {"role": "user", "content": "  "}], "must end with a non-empty user"),
])
def test_malformed_conversations_are_refused_with_a_sentence(messages, message):
    with pytest.raises(InputError, match=message):
        prompt_ids(make_tokenizer(), messages, ["Be concise."])


def test_a_template_that_refuses_a_conversation_is_an_input_error():
    alternating = ("{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
                   "{{ raise_exception('Conversation roles must alternate user/assistant') }}{% endif %}"
                   "{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    tok = make_tokenizer(alternating)
    two_users = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(InputError, match="chat template refuses the conversation: .*alternate"):
        prompt_ids(tok, two_users)
