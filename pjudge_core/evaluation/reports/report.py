"""A comparison report of one or more batch runs: Markdown tables and one plotly HTML page.

Per run spec (pooled over the runs): responses, mean length (words and new tokens), tokens/s (all
tokens over the machine time the records used: `compute_seconds`, each record's share of the
forwards it shared with others, so the figure holds for records decoded together; older records
without it fall back to their seconds), Persona-judge's acceptance rate (mean over responses),
share stopped by end-of-sequence; plus any score files written by ``eval rm --out`` / ``eval judge
--out`` / ``eval align-acc --out`` / ``eval fit --out``. Persona-fit files add their own section and
scatter (`fit_report`). When the runs' personas have meters, or fit and judge files name personas,
the paper's layout follows (`table2`): per signal, each spec's win rate against the baseline per
objective.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...engine.methods import BASELINE, DEFAULT_METHOD
from ...errors import InputError
from ..runs.records import load_records, spec_key, specs_in
from .fit_report import check_fit_scores, fit_axes, fit_markdown, fit_scatter
from .table2 import signal_tables, tables_figure, tables_markdown

KINDS = ("rm", "judge", "align-acc", "fit")


def summarize(records: list[dict]) -> dict:
    """{spec: {label, n, mean_words, mean_chars, mean_new_tokens, tokens_per_s, acceptance_rate, eos_share}}."""
    out: dict[str, dict] = {}
    for spec in specs_in(records):
        recs = [r for r in records if spec_key(r) == spec]
        stats = [r.get("stats") or {} for r in recs]
        tokens = sum(s.get("new_tokens") or 0 for s in stats)
        seconds = sum(s.get("compute_seconds") or s.get("seconds") or 0.0 for s in stats)
        rates = [s["acceptance_rate"] for s in stats if s.get("acceptance_rate") is not None]
        n = len(recs)
        out[spec] = {
            "label": recs[0].get("spec_label") or spec,
            "n": n,
            "mean_words": sum(len(r["text"].split()) for r in recs) / n,
            "mean_chars": sum(len(r["text"]) for r in recs) / n,
            "mean_new_tokens": tokens / n,
            "tokens_per_s": tokens / seconds if seconds > 0 else None,
            "acceptance_rate": sum(rates) / len(rates) if rates else None,
            "eos_share": sum(s.get("stopped_by") == "eos" for s in stats) / n,
        }
    return out


def load_scores(paths) -> list[dict]:
    scores = []
    for path in paths or []:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"Scores file {str(path)!r} does not exist.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}).") from exc
        if not isinstance(data, dict) or data.get("kind") not in KINDS:
            raise InputError(f"{path} is not a score file from `eval rm --out`, `eval judge --out`, "
                             "`eval align-acc --out` or `eval fit --out`.")
        if data["kind"] == "fit":
            check_fit_scores(data, path)
        scores.append(data)
    return scores


def _f(value, digits=3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _interval(d: dict, digits=3) -> str:
    if d.get("low") is None:
        return _f(d.get("mean", d.get("accuracy")), digits)
    centre = d.get("mean", d.get("accuracy", d.get("rate")))
    return f"{_f(centre, digits)} [{_f(d['low'], digits)}, {_f(d['high'], digits)}]"


def markdown(summary: dict, scores: list[dict], source: str = "", tables: list[dict] = (),
             baseline: str = BASELINE) -> str:
    lines = [f"# Run comparison{f' — {source}' if source else ''}", ""]
    cols = ["run spec", "responses", "mean words", "mean new tokens", "tokens/s", "acceptance rate", "stopped at EOS"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['n']} | {_f(s['mean_words'], 1)} | {_f(s['mean_new_tokens'], 1)} | "
                     f"{_f(s['tokens_per_s'], 1)} | {_f(s['acceptance_rate'])} | {_f(s['eos_share'], 2)} |")
    for sc in scores:
        lines.append("")
        if sc["kind"] == "rm":
            lines += [f"## Reward: {sc['metric']}", "", "| run spec | n | mean reward [95% CI] |", "|---|---|---|"]
            for m, d in sc["by_spec"].items():
                lines.append(f"| {m} | {d['n']} | {_interval(d)} |")
            if sc.get("paired"):
                p = sc["paired"]
                lines += ["", f"Paired difference {p['a']} − {p['b']} over {p['n']} prompts: "
                              f"{_interval(p)} (p = {_f(p.get('p_value'), 3)})."]
        elif sc["kind"] == "judge":
            lines += [f"## Pairwise judge: {sc['metric']}", "", f"Aspect: {sc['aspect']}", "",
                      f"| {sc['a']} vs {sc['b']} | count | rate [95% Wilson CI] |", "|---|---|---|"]
            for key in ("win", "tie", "loss"):
                d = sc[key]
                lines.append(f"| {key} | {d['count']} / {sc['n']} | {_f(d['rate'])} [{_f(d['low'])}, {_f(d['high'])}] |")
        elif sc["kind"] == "fit":
            lines += fit_markdown(sc)
        else:
            lines += [f"## Alignment accuracy: {sc.get('model', '')}", "",
                      f"Accuracy {_interval(sc)} over {sc['n']} pairs (ties count ½)."]
    if tables:
        lines += [""] + tables_markdown(tables, baseline)
    return "\n".join(lines) + "\n"


def figure(summary: dict, scores: list[dict]):
    """A plotly figure: one panel per metric, one bar per run spec (95% intervals where known)."""
    panels = [("mean words", {m: (s["mean_words"], None) for m, s in summary.items()}),
              ("tokens/s", {m: (s["tokens_per_s"], None) for m, s in summary.items()}),
              ("acceptance rate", {m: (s["acceptance_rate"], None) for m, s in summary.items()
                                   if s["acceptance_rate"] is not None})]
    for sc in scores:
        if sc["kind"] == "rm":
            panels.append((sc["metric"], {m: (d["mean"], d) for m, d in sc["by_spec"].items()}))
        elif sc["kind"] == "judge":
            panels.append((f"{sc['a']} vs {sc['b']} ({sc['judge']})",
                           {k: (sc[k]["rate"], {"mean": sc[k]["rate"], "low": sc[k]["low"], "high": sc[k]["high"]})
                            for k in ("win", "tie", "loss")}))
    panels = [(t, v) for t, v in panels if v]
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for t, _ in panels])
    palette = {DEFAULT_METHOD: "#d9480f", BASELINE: "#1c7ed6", "win": "#2b8a3e", "tie": "#868e96", "loss": "#c92a2a"}
    for i, (_, values) in enumerate(panels):
        names = list(values)
        ys = [values[n][0] for n in names]
        err = None
        if any(values[n][1] and values[n][1].get("low") is not None for n in names):
            plus = [(values[n][1]["high"] - values[n][0]) if values[n][1] and values[n][1].get("high") is not None else 0 for n in names]
            minus = [(values[n][0] - values[n][1]["low"]) if values[n][1] and values[n][1].get("low") is not None else 0 for n in names]
            err = dict(type="data", array=plus, arrayminus=minus, visible=True)
        fig.add_trace(go.Bar(x=names, y=ys, error_y=err, showlegend=False,
                             marker_color=[palette.get(n, "#495057") for n in names]),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=360 * rows, title="Run comparison", template="plotly_white")
    return fig


def write_report(records_paths, score_paths=(), out_md=None, out_html=None, axes: tuple = (None, None),
                 baseline: str = BASELINE) -> dict:
    """Markdown and/or HTML report of one batch run or several (a path or a list of paths);
    `axes` = (x, y) personas of the persona-fit scatters (default A, B); `baseline` is the spec
    the win-rate tables compare with.

    Everything is read and checked before anything is written.
    """
    paths = [records_paths] if isinstance(records_paths, (str, Path)) else list(records_paths)
    if not paths:
        raise InputError("No batch run to report on: pass --in FILE.")
    runs = [(Path(p).name, load_records(p)) for p in paths]
    records = [rec for _, recs in runs for rec in recs]
    summary = summarize(records)
    scores = load_scores(score_paths)
    scatters = [(sc, xy) for sc in scores if sc["kind"] == "fit" for xy in [fit_axes(sc, *axes)] if xy]
    tables = signal_tables(runs, scores, baseline)
    md = markdown(summary, scores, source=", ".join(name for name, _ in runs), tables=tables, baseline=baseline)
    if out_md:
        Path(out_md).parent.mkdir(parents=True, exist_ok=True)
        Path(out_md).write_text(md, encoding="utf-8")
    if out_html:
        figures = ([figure(summary, scores)] + ([tables_figure(tables, baseline)] if tables else [])
                   + [fit_scatter(sc, *xy) for sc, xy in scatters])
        # One page, plotly.js embedded once (offline), one div per figure.
        body = "\n".join(fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures))
        Path(out_html).parent.mkdir(parents=True, exist_ok=True)
        Path(out_html).write_text(f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Run comparison"
                                  f"</title></head><body>\n{body}\n</body></html>\n", encoding="utf-8")
    return {"summary": summary, "markdown": md, "scores": [s.get("metric", s["kind"]) for s in scores],
            "tables": tables}
