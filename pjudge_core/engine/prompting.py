"""Turning (query, preference) into the token ids a role sees.

Where the preference goes:
  1. the system turn, when the chat template renders one;
  2. otherwise (templates that reject or drop a system message, e.g. gemma) the user turn,
     as ``"{preference}\\n\\n{query}"``;
  3. models without a chat template get the plain-text fallback
     ``"{preference}\\n\\nUser: {query}\\nAssistant:"`` (just ``"User: ...\\nAssistant:"`` with no
     preference).

`prompt_ids(tok, query, [pref])` is both the draft/judge prompt of that preference and the
direct-prompting prompt with that one preference, so the two methods are compared on equal
footing. Several preferences are merged by `combine_preferences` into one instruction, the
paper's "direct prompting" baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import InputError

_SENTINEL = "\x00pjudge-system-probe\x00"
PLAIN_TEMPLATE = "{preference}\n\nUser: {query}\nAssistant:"


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


def prompt_text(tokenizer, query: str, preferences: Sequence[str] = ()) -> str:
    """The full prompt string (special tokens included) for a query under some preferences."""
    preference = combine_preferences(preferences)
    if not getattr(tokenizer, "chat_template", None):
        if not preference:
            return f"User: {query}\nAssistant:"
        return PLAIN_TEMPLATE.format(preference=preference, query=query)
    if not preference:
        messages = [{"role": "user", "content": query}]
    elif supports_system_turn(tokenizer):
        messages = [{"role": "system", "content": preference}, {"role": "user", "content": query}]
    else:
        messages = [{"role": "user", "content": f"{preference}\n\n{query}"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer, query: str, preferences: Sequence[str] = ()) -> list[int]:
    """Token ids of `prompt_text`. The template already holds BOS where the model wants one."""
    if not query or not query.strip():
        raise InputError("The query is empty; type a question or instruction.")
    text = prompt_text(tokenizer, query, preferences)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    ids = tokenizer(text, add_special_tokens=not has_template)["input_ids"]
    return list(ids)


def persona_prompts(tokenizer, query: str, preferences: Mapping[str, str]) -> tuple[dict[str, list[int]],
                                                                                   dict[str, str]]:
    """Each persona's own prompt, as token ids and as text: ({label: ids}, {label: prompt text})."""
    return ({label: prompt_ids(tokenizer, query, [text]) for label, text in preferences.items()},
            {label: prompt_text(tokenizer, query, [text]) for label, text in preferences.items()})
