"""Turning (query, preference) into the token ids a role sees.

A query is a string (one user turn) or a conversation: a list of ``{"role", "content"}`` messages,
an optional system message first, then user and assistant turns ending with a user turn (the
answer is the assistant's next turn). A string and the one-message conversation holding it give
the same prompt, token for token.

Where the preference goes:
  1. the system turn, when the chat template renders one;
  2. otherwise (templates that reject or drop a system message, e.g. gemma) the first user turn,
     as ``"{preference}\\n\\n{query}"``;
  3. models without a chat template get the plain-text fallback
     ``"{preference}\\n\\nUser: {query}\\nAssistant:"`` (just ``"User: ...\\nAssistant:"`` with no
     preference; earlier turns as ``"User: ...\\nAssistant: ...\\n"`` lines before it).
A conversation's own system message is kept and comes first: ``"{system}\\n\\n{preference}"`` takes
the preference's place in each case (so every persona's prompt shares the client's system text as
a prefix), and it stands alone when there is no preference.

`prompt_ids(tok, query, [pref])` is both the draft/judge prompt of that preference and the
direct-prompting prompt with that one preference, so the two methods are compared on equal
footing. Several preferences are merged by `combine_preferences` into one instruction, the
paper's "direct prompting" baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError

_SENTINEL = "\x00pjudge-system-probe\x00"


def combine_preferences(preferences: Sequence[str]) -> str:
    """One instruction from several preference texts; a single preference is returned unchanged."""
    prefs = [p.strip() for p in preferences if p and p.strip()]
    if len(prefs) <= 1:
        return prefs[0] if prefs else ""
    lines = "\n".join(f"{i}. {p}" for i, p in enumerate(prefs, 1))
    return f"Write a response that satisfies all of these preferences at once:\n{lines}"


def supports_system_turn(tokenizer) -> bool:
    """True when the chat template renders a system message (some raise, some silently drop it)."""
    if not getattr(tokenizer, "chat_template", None):
        return False
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hi"}],
            tokenize=False,
            add_generation_prompt=True,
        )
    except Exception:  # jinja raise_exception("System role not supported") and friends
        return False
    return _SENTINEL in text


Message = Mapping[str, str]
Query = str | Sequence[Message]  # one user turn, or a conversation
ROLES = ("system", "user", "assistant")


def conversation(query: Query) -> list[dict[str, str]]:
    """The query as a checked conversation (a string is one user turn); an `InputError` otherwise."""
    if isinstance(query, str):
        if not query.strip():
            raise InputError("The query is empty; type a question or instruction.")
        return [{"role": "user", "content": query}]
    if not isinstance(query, Sequence) or not query:
        raise InputError("The query must be a text or a non-empty list of messages (role and content).")
    messages = []
    for i, message in enumerate(query, 1):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise InputError(f"Message {i} must have a role and a text content.")
        if message.get("role") not in ROLES:
            raise InputError(f"Message {i} has role {message.get('role')!r}; the roles are {', '.join(ROLES)}.")
        if message["role"] == "system" and i > 1:
            raise InputError(f"Message {i} is a system message; only the first message may be one.")
        messages.append({"role": message["role"], "content": message["content"]})
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise InputError("The conversation must end with a non-empty user message (the answer is the next turn).")
    return messages


def characters(query: Query) -> int:
    """How long a query is in characters (a conversation's message contents together), for limits."""
    return len(query) if isinstance(query, str) else sum(len(m["content"]) for m in conversation(query))


def _instruction(system: str, preference: str) -> str:
    """A client's own system text, then the preference (either may be empty)."""
    return "\n\n".join(part for part in (system, preference) if part)


def prompt_text(tokenizer, query: Query, preferences: Sequence[str] = ()) -> str:
    """The full prompt string (special tokens included) for a query under some preferences."""
    turns = conversation(query)
    system = turns.pop(0)["content"] if turns[0]["role"] == "system" else ""
    instruction = _instruction(system, combine_preferences(preferences))
    if not getattr(tokenizer, "chat_template", None):
        lines = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in turns) + "Assistant:"
        return f"{instruction}\n\n{lines}" if instruction else lines
    if not instruction:
        messages = turns
    elif supports_system_turn(tokenizer):
        messages = [{"role": "system", "content": instruction}, *turns]
    else:
        first = next(i for i, m in enumerate(turns) if m["role"] == "user")
        messages = [*turns[:first], {"role": "user", "content": f"{instruction}\n\n{turns[first]['content']}"},
                    *turns[first + 1:]]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja's raise_exception: e.g. "roles must alternate user/assistant"
        if len(turns) == 1:
            raise
        raise InputError(f"This model's chat template refuses the conversation: {exc}") from None


def prompt_ids(tokenizer, query: Query, preferences: Sequence[str] = ()) -> list[int]:
    """Token ids of `prompt_text`. The template already holds BOS where the model wants one."""
    text = prompt_text(tokenizer, query, preferences)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    ids = tokenizer(text, add_special_tokens=not has_template)["input_ids"]
    return list(ids)


def persona_prompts(tokenizer, query: Query, preferences: Mapping[str, str]) -> tuple[dict[str, list[int]],
                                                                                   dict[str, str]]:
    """Each persona's own prompt, as token ids and as text: ({label: ids}, {label: prompt text})."""
    return ({label: prompt_ids(tokenizer, query, [text]) for label, text in preferences.items()},
            {label: prompt_text(tokenizer, query, [text]) for label, text in preferences.items()})
