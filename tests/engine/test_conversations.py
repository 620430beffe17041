"""Conversations through the library: every method prompts them, batches decode them exactly, and the
public limits count their characters."""

import pytest

from pjudge_core import DecodeSettings, InputError, Request, generate, generate_many
from pjudge_core.ui.access import Access

CHAT = [{"role": "system", "content": "You answer in one line."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Tell me a story"}]
PREFS = ["be brief", "be vivid"]


@pytest.mark.parametrize("method", ["persona-judge", "direct", "fusion"])
def test_every_method_prompts_a_conversation_with_each_persona(tiny_lm, method):
    result = generate(tiny_lm, method, CHAT, PREFS, DecodeSettings(seed=0, max_new_tokens=6))
    prompts = result.settings.get("prompts") or {"direct": result.settings["prompt"]}
    for prompt in prompts.values():
        assert "You answer in one line." in prompt and prompt.index("Hello!") < prompt.index("Tell me a story")
    assert result.settings["query"] == CHAT


def test_a_one_turn_conversation_decodes_the_tokens_of_its_query(tiny_lm):
    settings = DecodeSettings(seed=2, max_new_tokens=12)
    as_text = generate(tiny_lm, "persona-judge", "Tell me a story", PREFS, settings)
    as_turn = generate(tiny_lm, "persona-judge", [{"role": "user", "content": "Tell me a story"}], PREFS, settings)
    assert as_turn.token_ids == as_text.token_ids


def test_conversations_and_queries_decoded_together_each_equal_their_lone_run(tiny_lm):
    requests = [Request(spec, query, PREFS, DecodeSettings(seed=seed, max_new_tokens=10, stop=stop))
                for seed, (spec, query, stop) in enumerate([("persona-judge", CHAT, ()), ("direct", "Tell me", ()),
                                                              ("persona-judge", "Tell me", ("e",)), ("fusion", CHAT, ())])]
    together = generate_many(tiny_lm, requests, rows=4)
    for request, result in zip(requests, together):
        alone = generate(tiny_lm, request.spec, request.query, request.preferences, request.settings)
        assert result.token_ids == alone.token_ids and result.text == alone.text


def test_public_limits_count_a_conversations_characters():
    access = Access(public=True, max_query_chars=40)
    access.check_run([{"role": "user", "content": "x" * 40}], {"A": "a"}, DecodeSettings())
    long_chat = [{"role": "system", "content": "x" * 20}, {"role": "user", "content": "y" * 21}]
    with pytest.raises(InputError, match="The conversation is 41 characters; this public demo takes at most 40"):
        access.check_run(long_chat, {"A": "a"}, DecodeSettings())
