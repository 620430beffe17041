"""HTML for the app, as pure functions of the engine's `Step`s and stats (tested without a browser).

Every piece of model output and every attribute value goes through `esc` (``html.escape`` with
``quote=True``): a token such as ``"><img src=x onerror=alert(1)>`` is shown as text, never markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ..engine.trace import Step

DECISIONS = ("accepted", "resampled", "bonus", "sampled")


def esc(value) -> str:
    """HTML-escape anything (None -> empty string), quotes included."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(x: float | None, digits: int = 4) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return "inf" if x > 0 else ("-inf" if math.isinf(x) else "nan")
    return f"{x:.{digits}g}"


def ratio(step: Step) -> float | None:
    """p/q of the emitted token (None for bonus tokens, inf when the draft gave it q = 0)."""
    if step.q is None:
        return None
    if step.q <= 0:
        return math.inf if step.p > 0 else None
    return step.p / step.q


def shade(step: Step) -> float:
    """Background strength 0.25..1 : how strongly the judge backed the token (min(1, p/q))."""
    r = ratio(step)
    if r is None:  # bonus: straight from the judge
        value = step.p
    else:
        value = min(1.0, r)
    return round(0.25 + 0.75 * max(0.0, min(1.0, value)), 3)


def visible(text: str) -> str:
    """Token text as shown: whitespace-only tokens get a visible stand-in inside the span."""
    if text == "":
        return "∅"
    return text


def token_title(step: Step, persona_names: dict[str, str] | None = None) -> str:
    """Plain-text details of one token (the `title` tooltip); escaped by the caller."""
    names = persona_names or {}
    lines = [f"token {step.index}: {step.text!r}"]
    if step.drafter:
        judge = "B" if step.drafter == "A" else "A"
        da, dj = names.get(step.drafter, ""), names.get(judge, "")
        lines.append(f"block {step.block}: drafted by {step.drafter}{f' ({da})' if da else ''}, "
                     f"judged by {judge}{f' ({dj})' if dj else ''}")
    lines.append(step.decision)
    r = ratio(step)
    parts = [f"p={_num(step.p)}"]
    if step.q is not None:
        parts.append(f"q={_num(step.q)}")
    if r is not None:
        parts.append(f"p/q={_num(r)}")
    if step.u is not None:
        parts.append(f"u={_num(step.u)}")
    lines.append("  ".join(parts))
    if step.decision == "resampled" and step.rejected_text is not None:
        lines.append(f"rejected draft {step.rejected_text!r}: p={_num(step.rejected_p)} "
                     f"q={_num(step.rejected_q)}")
    if step.decision == "bonus":
        lines.append("no draft: taken from the judge after λ accepts")
    return "\n".join(lines)


def token_span(step: Step, new_block: bool = False, persona_names: dict[str, str] | None = None) -> str:
    """One `<span class="tok ...">` with title and data-* attributes, all escaped."""
    r = ratio(step)
    classes = ["tok", f"tok-{step.decision}" if step.decision in DECISIONS else "tok-other"]
    if step.drafter in ("A", "B"):
        classes.append(f"drafter-{step.drafter}")
    if new_block:
        classes.append("block-start")
    attrs = {
        "class": " ".join(classes),
        "title": token_title(step, persona_names),
        "data-index": step.index,
        "data-decision": step.decision,
        "data-drafter": step.drafter or "",
        "data-block": step.block,
        "data-p": _num(step.p, 6),
        "data-q": _num(step.q, 6),
        "data-ratio": _num(r, 6),
        "data-u": _num(step.u, 6),
        "style": f"--s:{shade(step)}",
    }
    if step.decision == "resampled":
        attrs.update({
            "data-rejected": step.rejected_text or "",
            "data-rejected-p": _num(step.rejected_p, 6),
            "data-rejected-q": _num(step.rejected_q, 6),
        })
    body = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
    return f"<span{body}>{esc(visible(step.text))}</span>"


def tokens_html(steps: Sequence[Step], *, running: bool = False, persona_names: dict[str, str] | None = None,
                placeholder: str = "Press Run: the Persona-judge answer appears here, token by token.") -> str:
    """The Persona-judge pane: every token a span; a block boundary starts a new drafter mark."""
    if not steps:
        inner = f'<span class="pj-placeholder">{esc(placeholder)}</span>'
    else:
        parts, previous = [], None
        for step in steps:
            parts.append(token_span(step, new_block=previous is not None and step.block != previous,
                                    persona_names=persona_names))
            previous = step.block
        inner = "".join(parts)
    cursor = '<span class="pj-cursor" aria-hidden="true">▍</span>' if running else ""
    state = "running" if running else "done"
    return f'<div class="pj-tokens" data-state="{state}" data-count="{len(steps)}">{inner}{cursor}</div>'


def legend_html() -> str:
    """Plain-words legend for the token colours and underlines."""
    items = [
        ("tok tok-accepted", "accepted", "the judge persona agreed with the drafter's token"),
        ("tok tok-resampled", "resampled", "the judge disagreed and chose its own token"),
        ("tok tok-bonus", "bonus", "an extra token the judge adds after a fully accepted block"),
    ]
    rows = "".join(f'<li><span class="{c}" style="--s:0.9">{esc(w)}</span> {esc(d)}</li>' for c, w, d in items)
    marks = (
        '<li><span class="tok drafter-A swatch">A</span> underline: persona A drafted this block '
        '(B judged it)</li>'
        '<li><span class="tok drafter-B swatch">B</span> underline: persona B drafted this block '
        '(A judged it)</li>'
        '<li><span class="tok block-start swatch">|</span> a thin bar marks where a new block begins</li>'
        '<li>Stronger colour = the judge liked the token at least as much as the drafter (p/q ≥ 1); '
        'paler = the judge found it less likely. Hover a token for p, q, p/q and the decision.</li>'
    )
    return f'<div class="pj-legend"><ul>{rows}{marks}</ul></div>'


def _fmt_rate(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _fmt_speed(stats: dict | None) -> str:
    if not stats or stats.get("tokens_per_s") is None:
        return "–"
    return f"{stats['tokens_per_s']:.1f} tok/s"


def stats_html(pj: dict | None, direct: dict | None = None) -> str:
    """The stats row: acceptance (overall, per drafter), speed and forward passes of both methods."""
    pj = pj or {}
    by = pj.get("acceptance_rate_by_drafter") or {}
    dec = pj.get("decisions") or {}
    cards = [
        ("Acceptance", _fmt_rate(pj.get("acceptance_rate")),
         f"A drafts: {_fmt_rate(by.get('A'))} · B drafts: {_fmt_rate(by.get('B'))}"),
        ("Decisions", f"{dec.get('accepted', 0)} / {dec.get('resampled', 0)} / {dec.get('bonus', 0)}",
         "accepted / resampled / bonus"),
        ("Persona-judge", _fmt_speed(pj),
         f"{pj.get('new_tokens', 0)} tokens, {pj.get('blocks', 0)} blocks, {pj.get('forward_passes', 0)} forwards"),
        ("Direct prompt", _fmt_speed(direct),
         f"{(direct or {}).get('new_tokens', 0)} tokens, {(direct or {}).get('forward_passes', 0)} forwards"),
    ]
    body = "".join(
        f'<div class="stat"><div class="stat-label">{esc(a)}</div><div class="stat-value">{esc(b)}</div>'
        f'<div class="stat-sub">{esc(c)}</div></div>' for a, b, c in cards)
    return f'<div class="pj-stats">{body}</div>'


def message_html(text: str, kind: str = "info") -> str:
    """A readable status / error line (kind: info | error | ok)."""
    if not text:
        return ""
    kind = kind if kind in ("info", "error", "ok") else "info"
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="pj-msg pj-msg-{kind}"{role}>{esc(text)}</div>'
