"""HTML for the app, as pure functions of the engine's `Step`s and stats (tested without a browser).

Every piece of model output and every attribute value goes through `esc` (``html.escape`` with
``quote=True``): a token such as ``"><img src=x onerror=alert(1)>`` is shown as text, never markup.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence

from ..engine.personas import LABELS
from ..engine.sampling import DECISIONS
from ..engine.trace import Step
from ..evaluation.meters import METERS, format_number, format_value
from ..evaluation.meters.repetition import repeated_ngram_share


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


def _persona(label: str | None, names: dict[str, str]) -> str:
    if not label:
        return ""
    name = names.get(label, "")
    return f"{label} ({name})" if name else label


def strongest_persona(step: Step) -> str | None:
    """Fusion: the persona whose own distribution gave the token the highest probability."""
    if not step.persona_p:
        return None
    return max(step.persona_p, key=lambda label: step.persona_p[label])


def token_title(step: Step, persona_names: dict[str, str] | None = None) -> str:
    """Plain-text details of one token (the `title` tooltip); escaped by the caller."""
    names = persona_names or {}
    lines = [f"token {step.index}: {step.text!r}"]
    if step.drafter:
        lines.append(f"block {step.block}: drafted by {_persona(step.drafter, names)}, "
                     f"judged by {_persona(step.judge, names)}")
    lines.append(step.decision)
    r = ratio(step)
    parts = [f"p={_num(step.p)}"]
    if step.q is not None and step.decision != "sampled":
        parts.append(f"q={_num(step.q)}")
    if r is not None and step.decision != "sampled":
        parts.append(f"p/q={_num(r)}")
    if step.u is not None:
        parts.append(f"u={_num(step.u)}")
    lines.append("  ".join(parts))
    if step.decision == "resampled" and step.rejected_text is not None:
        lines.append(f"rejected draft {step.rejected_text!r}: p={_num(step.rejected_p)} "
                     f"q={_num(step.rejected_q)}")
    if step.decision == "bonus":
        lines.append("no draft: taken from the judge after λ accepts")
    if step.persona_p:
        lines.append("fused p; each persona alone: " + "  ".join(
            f"{_persona(label, names)}={_num(p)}" for label, p in step.persona_p.items()))
    return "\n".join(lines)


def token_span(step: Step, new_block: bool = False, persona_names: dict[str, str] | None = None) -> str:
    """One `<span class="tok ...">` with title and data-* attributes, all escaped."""
    r = ratio(step)
    classes = ["tok", f"tok-{step.decision}" if step.decision in DECISIONS else "tok-other"]
    if step.drafter in LABELS:
        classes.append(f"drafter-{step.drafter}")
    strongest = strongest_persona(step)
    if strongest in LABELS:
        classes.append(f"drafter-{strongest}")  # fusion: underline = the persona that liked it most
    if new_block:
        classes.append("block-start")
    attrs = {
        "class": " ".join(classes),
        "title": token_title(step, persona_names),
        "data-index": step.index,
        "data-decision": step.decision,
        "data-drafter": step.drafter or "",
        "data-judge": step.judge or "",
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
    if step.persona_p:
        attrs["data-persona-p"] = " ".join(f"{label}={_num(p, 6)}" for label, p in step.persona_p.items())
    body = "".join(f' {k}="{esc(v)}"' for k, v in attrs.items())
    return f"<span{body}>{esc(visible(step.text))}</span>"


def tokens_html(steps: Sequence[Step], *, running: bool = False, persona_names: dict[str, str] | None = None,
                placeholder: str = "Press Run: the answer appears here, token by token.") -> str:
    """Every token a span; for Persona-judge a block boundary starts a new drafter mark."""
    if not steps:
        inner = f'<span class="pj-placeholder">{esc(placeholder)}</span>'
    else:
        parts, previous = [], None
        for step in steps:
            parts.append(token_span(step, new_block=step.drafter is not None and previous is not None
                                    and step.block != previous, persona_names=persona_names))
            previous = step.block
        inner = "".join(parts)
    cursor = '<span class="pj-cursor" aria-hidden="true">▍</span>' if running else ""
    state = "running" if running else "done"
    return f'<div class="pj-tokens" data-state="{state}" data-count="{len(steps)}">{inner}{cursor}</div>'


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def panel_footer(steps: Sequence[Step], stats: dict | None, elapsed: float | None = None) -> str:
    """One line under a panel: tokens, speed, acceptance per drafter, how much the answer loops."""
    parts = [f"{len(steps)} tokens"]
    if stats and stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    elif elapsed and steps:
        parts.append(f"{len(steps) / elapsed:.1f} tok/s")
    if stats and stats.get("acceptance_rate") is not None:
        by = stats.get("acceptance_rate_by_drafter") or {}
        per = ", ".join(f"{label} drafts {_pct(rate)}" for label, rate in by.items())
        parts.append(f"acceptance {_pct(stats['acceptance_rate'])}" + (f" ({per})" if per else ""))
    parts.append(f"repeated 4-grams {_pct(repeated_ngram_share([s.token_id for s in steps]))}")
    if stats:
        parts.append("stopped at end of answer" if stats.get("stopped_by") == "eos" else "stopped at max new tokens")
    return f'<div class="pj-panel-foot">{esc(" · ".join(parts))}</div>'


def panel_html(title: str, about: str, steps: Sequence[Step], *, running: bool = False, stats: dict | None = None,
               persona_names: dict[str, str] | None = None, elapsed: float | None = None, extra: str = "") -> str:
    """A method's panel: its name, what it does, its tokens, a footer line once it has tokens, and
    `extra` (HTML built here, e.g. `fit_html`) under it."""
    head = f'<div class="pj-panel-head"><b>{esc(title)}</b> <span class="pj-panel-about">{esc(about)}</span></div>'
    foot = panel_footer(steps, stats, elapsed) if steps else ""
    return head + tokens_html(steps, running=running, persona_names=persona_names) + foot + extra


def legend_html() -> str:
    """Plain-words legend for the token colours and underlines."""
    items = [
        ("tok tok-accepted", "accepted", "the judge persona agreed with the drafter's token"),
        ("tok tok-resampled", "resampled", "the judge disagreed and chose its own token"),
        ("tok tok-bonus", "bonus", "an extra token the judge adds after a fully accepted block"),
        ("tok tok-sampled", "sampled", "direct prompting: one prompt, plain sampling"),
        ("tok tok-fused", "fused", "fusion: sampled from the personas' combined logits"),
    ]
    rows = "".join(f'<li><span class="{c}" style="--s:0.9">{esc(w)}</span> {esc(d)}</li>' for c, w, d in items)
    swatches = "".join(f'<span class="tok drafter-{label} swatch">{label}</span>' for label in LABELS)
    marks = (
        f'<li>{swatches} underline: the persona that drafted the block (Persona-judge), or that liked the '
        'token most (fusion)</li>'
        '<li><span class="tok block-start swatch">|</span> a thin bar marks where a new block begins</li>'
        '<li>Stronger colour = the judge liked the token at least as much as the drafter (p/q ≥ 1); '
        'paler = the judge found it less likely. Hover a token for p, q, p/q and the decision.</li>'
    )
    return f'<div class="pj-legend"><ul>{rows}{marks}</ul></div>'


def message_html(text: str, kind: str = "info") -> str:
    """A readable status / error line (kind: info | error | ok)."""
    if not text:
        return ""
    kind = kind if kind in ("info", "error", "ok") else "info"
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="pj-msg pj-msg-{kind}"{role}>{esc(text)}</div>'


def follows_html(sentences: Sequence[str] | None, note: str = "") -> str:
    """Whether the model follows each persona: one escaped line per persona, and what the numbers rest on."""
    if not sentences:
        return ('<div class="pj-follows"><p>No measurement is shipped for this model: press "Measure on this '
                'query" to see whether it follows these personas.</p></div>')
    lines = "".join(f"<li>{esc(s)}</li>" for s in sentences)
    note = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(note))  # the commands the note names, as code
    return f'<div class="pj-follows"><ul>{lines}</ul>' + (f"<p><small>{note}</small></p>" if note else "") + \
        "</div>"


# --------------------------------------------------------------------------- lab insight

def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def fit_html(fit, reason: str = "", persona_names: dict[str, str] | None = None, model: str | None = None) -> str:
    """One line in a finished panel: the answer's mean persona fit under each persona (nats/token),
    naming the model that scored it."""
    by = f" under {model}" if model else ""
    if fit is None:
        return f'<div class="pj-fit pj-fit-none">{esc(f"Persona fit{by}: " + reason)}</div>' if reason else ""
    names = persona_names or {}
    chips = "".join(
        f'<span class="pj-fit-chip drafter-{esc(label)}" data-label="{esc(label)}" data-fit="{value:.6f}" '
        f'title="{esc(f"mean over {len(fit.token_ids)} tokens; total {fit.total[label]:+.2f} nats")}">'
        f'{esc(_persona(label, names))} {esc(_signed(value))}</span>'
        for label, value in fit.mean.items())
    model_attr = f' data-model="{esc(model)}"' if model else ""
    return (f'<div class="pj-fit"{model_attr} title="log p(token | query, persona) − log p(token | query), averaged '
            f'over the answer: above 0 the persona made this answer more likely">'
            f'{esc(f"Persona fit{by}, nats/token:")} {chips}</div>')


def meters_html(values: dict | None) -> str:
    """One line in a finished panel: "grade 8.1 · 54 words · sentiment +0.62" (`evaluation.meters`);
    each value carries its library name (``data-meter``) and what it measures (hover)."""
    if not values:
        return ""
    chips = " · ".join(
        f'<span class="pj-meter" data-meter="{esc(name)}" data-value="{esc("" if values[name] is None else values[name])}" '
        f'title="{esc(f"{name}: {METERS[name].about}")}">{esc(format_value(name, values[name]))}</span>'
        for name in METERS if name in values)
    return (f'<div class="pj-meters" title="Independent meters (textstat, VADER): no language model involved; '
            f'English only">{chips}</div>')


def front_summary_html(result: dict) -> str:
    """The front in words: each spec's mean fit per persona and how often it beat direct prompting."""
    labels, beats = result["labels"], result.get("beats_baseline") or {}
    head = "".join(f"<th>fit {esc(label)}</th>" for label in labels)
    rows = []
    for spec, by_label in result["by_spec"].items():
        cells = "".join(f"<td>{_interval_cell(by_label[label])}</td>" for label in labels)
        b = beats.get(spec)
        beat = ("baseline" if spec == result.get("baseline") else "–" if not b or b["rate"] is None
                else f"{b['wins']}/{b['n']}")
        n = max((d["n"] for d in by_label.values()), default=0)
        rows.append(f'<tr data-spec="{esc(spec)}"><td>{esc(spec)}</td><td>{n}</td>{cells}<td>{esc(beat)}</td></tr>')
    return (f'<table class="pj-table pj-front-table"><thead><tr><th>method</th><th>answers</th>{head}'
            f'<th>beats direct on all personas</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _interval_cell(d: dict) -> str:
    if d.get("mean") is None:
        return "–"
    if d.get("low") is None:
        return esc(_signed(d["mean"]))
    return f'{esc(_signed(d["mean"]))} <span class="pj-ci">[{esc(_signed(d["low"]))}, {esc(_signed(d["high"]))}]</span>'


def profile_html(user: dict) -> str:
    """A bundled P-Soups user: profile and number of pairs (the truth stays hidden until inference)."""
    return (f'<div class="pj-profile" data-user="{esc(user["index"])}"><b>P-Soups user {esc(user["index"])}</b>, '
            f'{len(user["pairs"])} example pairs. Profile: {esc(user.get("profile") or "none given")}</div>')


def inference_html(inference: dict, truth: str | None = None) -> str:
    """Candidate personas ranked by Σ [log p(chosen | x, c) − log p(rejected | x, c)], best first."""
    best = inference["ranking"][0]["score"]
    rows = []
    for rank, c in enumerate(inference["ranking"], 1):
        mark = ' <span class="pj-truth">✓ ground truth</span>' if truth is not None and c["text"] == truth else ""
        if c["text"] == inference.get("written"):
            mark += ' <span class="pj-written">written by the model</span>'
        named = c["name"] != c["text"] and c["text"] != inference.get("written")
        name = f'<span class="pj-cand-name">{esc(c["name"])}</span> ' if named else ""
        best_class = ' class="pj-best"' if rank == 1 else ""
        rows.append(f'<tr data-rank="{rank}"{best_class}><td>{rank}</td>'
                    f'<td>{name}<span class="pj-cand-text">{esc(c["text"])}</span>{mark}</td>'
                    f'<td>{esc(_signed(c["score"]))}</td><td>{esc(_signed(c["score"] - best))}</td></tr>')
    skipped = inference.get("skipped") or []
    note = (f" {len(skipped)} pair{'s' if len(skipped) > 1 else ''} skipped (longer than the model's context)."
            if skipped else "")
    verdict = ""
    if truth is not None:
        verdict = (" The best candidate is this user's ground truth." if inference["best"] == truth else
                   " The best candidate is not this user's ground truth.")
    scored = f"{inference['pairs']} pairs scored by {inference['model']}."
    return (f'<div class="pj-infer"><p>{esc(scored + verdict + note)}</p><table class="pj-table"><thead><tr>'
            f'<th>#</th><th>candidate persona</th><th>score (nats)</th><th>vs best</th></tr></thead><tbody>{"".join(rows)}'
            f'</tbody></table></div>')


ANSWERS_PLACEHOLDER = ("Press Run on the Compare tab: when its answers finish, each one's persona fit and "
                       "independent meters line up here.")


def answers_html(record: dict | None) -> str:
    """A run's answers side by side (the "Did it work?" tab): each method's mean persona fit under
    every persona (the highest in each column in bold) and its independent meters, from the run's
    record (`fit` and `meters` sections)."""
    if not record or not record.get("panels"):
        return f'<div class="pj-answers pj-fit-none">{esc(ANSWERS_PLACEHOLDER)}</div>'
    personas = record.get("personas") or {}
    fits = (record.get("fit") or {}).get("panels") or {}
    meters = (record.get("meters") or {}).get("panels") or {}
    labels = list(personas)
    means = {p["slot"]: (fits.get(p["slot"]) or {}).get("mean") or {} for p in record["panels"]}
    best = {label: max((m[label] for m in means.values() if label in m), default=None) for label in labels}
    head = "".join(f'<th><span class="pj-fit-chip drafter-{esc(label)}">{esc(_persona(label, _names(personas)))}'
                   f'</span></th>' for label in labels)
    head += "".join(f'<th title="{esc(meter.about)}"><span class="pj-long">{esc(meter.title)}</span>'
                    f'<span class="pj-short">{esc(meter.short)}</span></th>' for meter in METERS.values())
    rows = []
    for panel in record["panels"]:
        slot, mean = panel["slot"], means[panel["slot"]]
        cells = []
        for label in labels:
            value = mean.get(label)
            top = ' class="pj-top"' if value is not None and value == best[label] and len(means) > 1 else ""
            data = f' data-fit="{value:.6f}"' if value is not None else ""
            cells.append(f'<td{top}{data}>{"–" if value is None else esc(_signed(value))}</td>')
        values = meters.get(slot) or {}
        for name in METERS:
            cells.append(f'<td data-meter="{esc(name)}">{esc(format_number(name, values.get(name)))}</td>')
        rows.append(f'<tr data-slot="{esc(slot)}"><td>{esc(panel.get("label") or slot)}</td>{"".join(cells)}</tr>')
    model = (record.get("fit") or {}).get("model")
    by = f"Persona fit under {model}, in nats per token (above 0: the persona made the answer more likely)." \
        if model else "Persona fit in nats per token."
    return (f'<div class="pj-answers"><p>{esc(by)} The meters need no language model.</p>'
            f'<table class="pj-table"><thead><tr><th>method</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _names(personas: dict) -> dict[str, str]:
    return {label: (p.get("name") or "") if isinstance(p, dict) else "" for label, p in personas.items()}
