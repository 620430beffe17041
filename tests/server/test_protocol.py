"""Reading OpenAI's chat-completions bodies into the library's objects, without a model or a server."""

import pytest

from pjudge_core import DecodeSettings
from pjudge_core.presets import pair, persona_text
from pjudge_core.server.protocol import ApiError, read_chat

SERVED = ("tiny-llama", "bundled")
HI = [{"role": "user", "content": "Hi there"}]


def chat(**body):
    return read_chat({"messages": HI, **body}, SERVED)


def refused(body, match, param=None, status=400):
    with pytest.raises(ApiError, match=match) as caught:
        read_chat(body, SERVED)
    assert (caught.value.param, caught.value.status) == (param, status)
    return caught.value


def test_fields_left_out_take_the_librarys_defaults_not_openais():
    call = chat(personas=["Be brief.", "Be vivid."])
    assert call.settings == DecodeSettings()
    assert call.spec.key == "persona-judge" and call.personas == ["Be brief.", "Be vivid."]
    assert not call.stream and not call.return_steps


def test_openai_fields_map_onto_decode_settings():
    call = chat(model="bundled", max_tokens=7, temperature=0.5, top_p=0.8, seed=4, stop="\n\n", lam=2, top_k=5,
                alternate=False, reproducible=True)
    assert call.settings == DecodeSettings(max_new_tokens=7, temperature=0.5, top_p=0.8, seed=4, stop=("\n\n",), lam=2,
                                           top_k=5, alternate=False, reproducible=True)
    assert chat(max_completion_tokens=9, max_tokens=3).settings.max_new_tokens == 9  # the newer name wins
    assert chat(temperature=0).settings.greedy  # OpenAI's temperature 0 is the most likely token
    assert chat(stop=["a", "b"]).settings.stop == ("a", "b")


def test_messages_become_a_conversation():
    call = read_chat({"messages": [{"role": "developer", "content": "Be exact."},
                                   {"role": "system", "content": "You teach."},
                                   {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                                                {"type": "text", "text": "there"}]}]}, SERVED)
    assert call.messages == [{"role": "system", "content": "Be exact.\n\nYou teach."},
                             {"role": "user", "content": "Hi there"}]


def test_personas_are_texts_or_preset_names_and_a_pair_is_a_ready_made_pair():
    assert chat(personas=["concise", "A reply that rhymes."]).personas == [persona_text("concise"),
                                                                           "A reply that rhymes."]
    assert chat(pair="concise + detailed").personas == list(pair("concise + detailed"))


@pytest.mark.parametrize("body, match, param", [
    ({"messages": []}, "messages must be a non-empty list", "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "Message 1 has role 'tool'", "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "not text", "messages"),
    ({"messages": HI, "personas": ["elementry", "Be kind."]}, "Unknown persona preset 'elementry'", "personas"),
    ({"messages": HI, "personas": "Be brief."}, "personas must be a list", "personas"),
    ({"messages": HI, "pair": "nope + nothing"}, "Unknown preset pair", "pair"),
    ({"messages": HI, "spec": "beam-search"}, "Unknown method 'beam-search'", "spec"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens must be a whole number of at least 1", "max_tokens"),
    ({"messages": HI, "max_tokens": -3}, "at least 1", "max_tokens"),
    ({"messages": HI, "temperature": -1}, "Temperature must be above 0", "temperature"),
    ({"messages": HI, "top_p": 2}, "Top-p must be in", "top_p"),
    ({"messages": HI, "lam": "many"}, "must be a number", "lam"),
    ({"messages": HI, "stop": 3}, "stop must be a text or a list", "stop"),
    ({"messages": HI, "stream": "yes"}, "stream must be true or false", "stream"),
    ({"messages": HI, "n": 3}, "n must be 1", "n"),
    ({"messages": HI, "logprobs": True}, "logprobs=True is not supported", "logprobs"),
    ({"messages": HI, "tools": [{"type": "function"}]}, "tools=.* is not supported", "tools"),
    ({"messages": HI, "persona": ["Be brief."]}, "Unknown field 'persona'", "persona"),
])
def test_bad_input_is_one_sentence_naming_the_field(body, match, param):
    refused(body, match, param)


def test_another_model_is_not_found_and_nothing_loads():
    error = refused({"model": "/etc/passwd", "messages": HI}, "is not served here; this server serves 'tiny-llama'",
                    "model", 404)
    assert error.body()["error"]["code"] == "model_not_found"


def test_neutral_openai_fields_and_bookkeeping_fields_are_accepted():
    call = chat(n=1, logprobs=False, frequency_penalty=0, presence_penalty=0, response_format={"type": "text"},
                user="me", metadata={"a": "b"}, stream=True, stream_options={"include_usage": True})
    assert call.stream and call.include_usage


def test_the_servers_defaults_fill_what_a_request_leaves_out():
    defaults = {"personas": ["concise", "Write like a poet."], "spec": "direct"}
    call = read_chat({"messages": HI}, SERVED, defaults)
    assert call.personas == [persona_text("concise"), "Write like a poet."] and call.spec.key == "direct"
    own = read_chat({"messages": HI, "personas": ["Be brief.", "Be kind."], "spec": "fusion"}, SERVED, defaults)
    assert own.personas == ["Be brief.", "Be kind."] and own.spec.key == "fusion"
    assert read_chat({"messages": HI, "pair": "concise + detailed"}, SERVED, defaults).personas == list(
        pair("concise + detailed"))  # a request's pair replaces the default personas


def test_empty_stop_entries_from_harnesses_are_dropped():
    assert chat(stop=[None]).settings.stop == () and chat(stop=["", "###"]).settings.stop == ("###",)
