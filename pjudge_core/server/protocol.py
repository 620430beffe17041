"""OpenAI's chat-completions protocol, read into the library's objects and written back from them.

Pure functions, no web framework: `read_chat(body, ...)` turns a request body into a `ChatCall`
(a run spec, a conversation, personas, `DecodeSettings`) or raises `ApiError`, the one-sentence
message and the field it concerns that OpenAI's error shape carries; `completion` and `chunk`
write a `Result` or a step as OpenAI's objects, with this project's figures in an extra field
``pjudge``.

What a body may hold:
  * OpenAI's own fields: ``model`` (the served model's id or name), ``messages`` (system, developer
    (= system), user and assistant turns; a content is a text or a list of text parts),
    ``max_tokens`` / ``max_completion_tokens``, ``temperature`` (0 means greedy), ``top_p``, ``seed``,
    ``stop`` (a text or a list; empty entries are dropped), ``stream``, ``stream_options.include_usage``, ``n`` = 1. Fields a
    request leaves out take the library's defaults (`DecodeSettings`: temperature 0.9, top-p 0.9,
    top-k 20, 128 new tokens), not OpenAI's. Fields that only ask for OpenAI's defaults (``n`` 1, no
    tools, ``logprobs`` false, penalties 0, ...) are accepted; asking for more is refused with a sentence.
    Bookkeeping fields (``user``, ``metadata``, ``store``, ...) are ignored.
  * Persona-judge's, what the ``openai`` client's ``extra_body`` sends: ``personas`` (preference
    texts or persona preset names, A first), ``pair`` (a ready-made pair by name), ``spec`` (any run
    spec the registry accepts; default ``persona-judge``), ``return_steps`` (every token's decision
    with p and q), and any `DecodeSettings` field by its own name (``lam``, ``top_k``, ``alternate``,
    ``greedy``, ``repetition_penalty``, ``no_repeat_ngram_size``, ``reproducible``). Any other field is
    refused, naming it: a typo in ``extra_body`` must not silently decode something else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..engine.methods import DEFAULT_METHOD
from ..engine.settings import LABELS, DecodeSettings
from ..engine.specs import RunSpec
from ..engine.trace import Result
from ..errors import InputError
from ..presets import pair, presets

DEFAULT_SPEC = DEFAULT_METHOD  # a request without `spec` runs Persona-judge
# OpenAI fields accepted as long as they ask for what OpenAI does by default (the value this server gives).
NEUTRAL = {"n": 1, "logprobs": False, "top_logprobs": None, "frequency_penalty": 0, "presence_penalty": 0,
           "logit_bias": None, "tools": None, "functions": None, "tool_choice": None, "function_call": None,
           "response_format": None, "parallel_tool_calls": None, "modalities": None, "audio": None,
           "prediction": None, "reasoning_effort": None, "web_search_options": None}
IGNORED = ("user", "metadata", "store", "service_tier", "stream_options", "safety_identifier", "prompt_cache_key")
OPENAI = ("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop",
          "stream")
SETTINGS = tuple(f for f in DecodeSettings.__dataclass_fields__
                 if f not in ("max_new_tokens", "temperature", "top_p", "seed", "stop"))
EXTRA = ("personas", "pair", "spec", "return_steps", *SETTINGS)
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(InputError):
    """A request this server refuses: OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.status, self.kind, self.code = message, param, status, kind, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatCall:
    """One chat-completions request, read and checked (no model needed)."""

    spec: RunSpec
    messages: list[dict]  # the conversation (`prompting.conversation`)
    personas: list[str]  # preference texts, A first
    settings: DecodeSettings
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    return_steps: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


def read_chat(body, served: tuple[str, ...], defaults: Mapping | None = None) -> ChatCall:
    """A body (parsed JSON) as a `ChatCall`; `ApiError` with one sentence for anything it cannot run.
    `served`: the names the served model answers to (the first is what answers carry). `defaults`:
    body fields the server was started with (``personas``, ``spec``), for clients that cannot send
    extra fields (lm-evaluation-harness, MT-Bench); a request's own fields win (its ``pair`` too)."""
    if not isinstance(body, Mapping):
        raise ApiError("The request body must be a JSON object.")
    if defaults:
        given = set(body) | ({"personas"} if "pair" in body else set())
        body = {**{k: v for k, v in defaults.items() if k not in given}, **body}
    known = set(OPENAI) | set(NEUTRAL) | set(IGNORED) | set(EXTRA)
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(f"Unknown field {unknown[0]!r}; this server's own fields are {', '.join(EXTRA)}.", unknown[0])
    if body.get("n", 1) != 1:
        raise ApiError(f"n must be 1; got {body['n']!r}: this server writes one answer per request (send several, "
                       "with different seeds, for more).", "n")
    for name, neutral in NEUTRAL.items():
        value = body.get(name, neutral)
        if value not in (neutral, None) and not (name == "response_format" and value == {"type": "text"}):
            raise ApiError(f"{name}={value!r} is not supported here; Persona-judge writes one text answer "
                           f"(leave {name} out).", name)
    model = body.get("model")
    if model is not None and model not in served:
        raise ApiError(f"The model {model!r} is not served here; this server serves {served[0]!r}.", "model",
                       status=404, code="model_not_found")
    messages = _messages(body.get("messages"))
    personas = _personas(body.get("personas"), body.get("pair"))
    settings = _settings(body)
    spec = _spec(body.get("spec", DEFAULT_SPEC))
    stream_options = body.get("stream_options") or {}
    return ChatCall(spec, messages, personas, settings, stream=_flag(body, "stream"),
                    include_usage=isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True,
                    return_steps=_flag(body, "return_steps"))


def _flag(body: Mapping, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(f"{name} must be true or false; got {value!r}.", name)
    return value


def _messages(messages) -> list[dict]:
    """OpenAI's messages as the library's conversation: developer turns are system turns, text parts joined."""
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages must be a non-empty list of {role, content} objects.", "messages")
    turns = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, Mapping) else None
            raise ApiError(f"Message {i} has role {role!r}; this server takes {', '.join(ROLES)} messages.", "messages")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            if not all(isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
                       for p in content):
                raise ApiError(f"Message {i} holds a part that is not text; this server reads text only.", "messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ApiError(f"Message {i} must have a text content.", "messages")
        turns.append({"role": ROLES[message["role"]], "content": content})
    if turns[0]["role"] == "system" and len(turns) > 1 and turns[1]["role"] == "system":
        # several leading system / developer messages (a harness's and a user's) read as one
        turns[:2] = [{"role": "system", "content": f"{turns[0]['content']}\n\n{turns[1]['content']}"}]
    return turns


def _personas(personas, pair_name) -> list[str]:
    """Preference texts, A first: each item a text or a persona preset's name; or a ready-made pair."""
    if pair_name is not None:
        if personas:
            raise ApiError("Give either personas or pair, not both.", "pair")
        if not isinstance(pair_name, str):
            raise ApiError("pair must be the name of a ready-made pair.", "pair")
        return _input(lambda: list(pair(pair_name)), "pair")
    if personas is None:
        return []
    if isinstance(personas, str) or not isinstance(personas, list):
        raise ApiError("personas must be a list of preference texts or persona preset names, A first.", "personas")
    known = presets().personas
    texts = []
    for item in personas:
        if not isinstance(item, str) or not item.strip():
            raise ApiError("Each persona must be a non-empty text or a persona preset's name.", "personas")
        if item in known:
            texts.append(known[item].text)
        elif len(item.split()) == 1:  # one word that names no preset: most likely a misspelt name
            raise ApiError(f"Unknown persona preset {item!r}; known personas: {', '.join(known)} (a preference "
                           "text of your own has more than one word).", "personas")
        else:
            texts.append(item)
    return texts


def _settings(body: Mapping) -> DecodeSettings:
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise ApiError(f"{param} must be a whole number of at least 1; got {tokens!r}.", param)
    raw = {name: body[name] for name in SETTINGS if name in body}
    temperature = body.get("temperature")
    if temperature is not None and not isinstance(temperature, bool) and temperature == 0:
        raw["greedy"], temperature = True, None  # OpenAI's temperature 0: the most likely token
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or isinstance(stop, list)):
        raise ApiError("stop must be a text or a list of texts.", "stop")
    if isinstance(stop, list):  # harnesses send [None] or [""] for "no stop string" (lm-evaluation-harness)
        stop = [s for s in stop if s not in (None, "")]
    raw.update(max_new_tokens=tokens, temperature=temperature, top_p=body.get("top_p"), seed=body.get("seed"),
               stop=[stop] if isinstance(stop, str) else stop)
    for name, value in raw.items():  # a JSON type the setting cannot take is the client's mistake
        if value is not None and not isinstance(value, (bool, int, float, str, list)):
            raise ApiError(f"{name} cannot be {value!r}.", name)
    try:
        return DecodeSettings.from_inputs(**raw)
    except InputError as exc:
        raise ApiError(str(exc), _which(str(exc), raw)) from None


def _which(message: str, raw: Mapping) -> str | None:
    """The field an error message of `DecodeSettings` is about (its label starts the sentence)."""
    for name, label in LABELS.items():
        if message.startswith(label) and name in raw:
            return {"max_new_tokens": "max_tokens"}.get(name, name)
    return None


def _spec(text) -> RunSpec:
    if not isinstance(text, str):
        raise ApiError("spec must be a run spec such as persona-judge, direct[A] or fusion(alpha=0.5).", "spec")
    return _input(lambda: RunSpec.parse(text), "spec")


def _input(make, param: str):
    try:
        return make()
    except InputError as exc:
        raise ApiError(str(exc), param) from None


# ---------------------------------------------------------------------- answers
def finish_reason(result: Result) -> str:
    """OpenAI's reason: "stop" at end-of-sequence or a stop string, "length" at the token budget."""
    return "length" if result.stats["stopped_by"] == "max_new_tokens" else "stop"


def usage(result: Result) -> dict:
    """Prompt tokens are every row's prompt (each persona's is read): what the request cost the machine."""
    prompt = sum(result.stats["prompt_tokens"])
    return {"prompt_tokens": prompt, "completion_tokens": len(result.token_ids),
            "total_tokens": prompt + len(result.token_ids)}


STAT_KEYS = ("new_tokens", "stopped_by", "stop", "forward_passes", "seconds", "tokens_per_s", "prompt_tokens",
             "blocks", "acceptance_rate", "acceptance_rate_by_drafter", "decisions")


def extra(call: ChatCall, result: Result, *, steps: bool) -> dict:
    """This project's figures: the run spec, seed, personas and the run's statistics; its steps when asked."""
    record = result.settings
    out = {"spec": call.spec.key, "seed": record.get("seed"),
           "personas": dict(zip(record.get("labels", []), record.get("preferences", []))),
           "stats": {k: result.stats[k] for k in STAT_KEYS if k in result.stats}}
    if steps:
        out["steps"] = [s.to_dict() for s in result.steps]
    return out


def completion(call: ChatCall, model: str, result: Result) -> dict:
    """A finished run as OpenAI's ``chat.completion``."""
    return {"id": call.id, "object": "chat.completion", "created": call.created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": finish_reason(result), "logprobs": None}],
            "usage": usage(result), "pjudge": extra(call, result, steps=call.return_steps)}


def chunk(call: ChatCall, model: str, delta: dict, finish: str | None = None, **more) -> dict:
    """One ``chat.completion.chunk`` of a stream."""
    return {"id": call.id, "object": "chat.completion.chunk", "created": call.created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **more}
