"""Share links: a run's form, and the seed it actually used, carried in the page's URL.

A run's record keeps its form (`run_form`: the model, 4-bit, every field of `form.FIELDS` as the
page had it, and the seed the run used, drawn at random when the seed box was empty). The Compare
tab's "Share link" turns that into a link (`link`); opening the link fills the form in again
(`restore`, from the page's load event), validated like a form typed in: `form.read_form` and
`Access.check_model`, so on a public deployment a model off its list or an over-long text gets the
sentence a run would get, and the form is left as it was.

The URL: ``<page address>?run=1.<data>``, where ``1`` is the format's version and ``<data>`` is
the form as compact JSON, deflated (zlib) and base64url-encoded without padding, e.g.
``{"model": "bundled", "four_bit": false, "ran_on": "… on cpu (float32)", "fields": {"query": …,
"seed": 1234, …}}`` (fields of personas beyond the run's count are left out). The whole link
stays on the visitor's side: nothing is stored on the server (unlike Gradio's DeepLinkButton,
which keeps the state in files that the app's cache clean-up deletes within the hour). A damaged,
cut or hand-edited link is one readable sentence, never a traceback.

The page address is the one the visitor's browser shows (`window.location`, read by the button's
JavaScript), without its query or fragment (`base_url`): behind a Space's proxy that is the public
``https://<owner>-<space>.hf.space/`` address, and it drops the visitor's signed ``__sign`` token.
Hugging Face also passes a Space page's query string to the app on load, so
``https://huggingface.co/spaces/<owner>/<space>?run=…`` opens the same form.

The run's tokens come back with the same model, dtype, device and library versions
(docs/decoding.md, "What a seed reproduces"); `NOTE` says so in the page.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from .. import presets as P
from ..engine.personas import LABELS, MAX_PERSONAS
from ..errors import InputError
from .access import Access
from .form import FIELD_NAMES, FIELDS, REQUIRED, Values, number, read_form

PARAM = "run"  # the query parameter
VERSION = "1"  # the format of its value: "<version>.<data>"
MAX_CHARS = 8000  # of the parameter's value: the whole URL stays under common 8 KiB request-line limits
MAX_JSON = 1 << 18  # bytes a link may inflate to (a link is never a zip bomb)
PERSONA_FIELDS = {label: (f"persona_{label.lower()}", f"pref_{label.lower()}") for label in LABELS}
TEXT_FIELDS = ("query", "roles", "weights", *(name for pair in PERSONA_FIELDS.values() for name in pair))
REQUIRED_FIELDS = tuple(f.name for f in FIELDS if f.default is REQUIRED)

DAMAGED = ("This share link is damaged or incomplete (perhaps cut off when it was copied); "
           "the form is left as it was.")
OTHER_VERSION = "This share link was made by another version of the app; the form is left as it was."
NOTE = ("Run gives the same tokens on the same model, dtype and device (and library versions): always with "
        "Reproducible ticked, otherwise when the answers decode alone or in float32 on a CPU.")


@dataclass(frozen=True)
class Shared:
    """A share link's form, validated: what the page's components take."""

    model: str | None
    four_bit: bool
    values: dict[str, object]  # {field: value} for every field of `form.FIELDS`
    ran_on: str  # the model, device and dtype of the run the link comes from ("" if unknown)

    @property
    def seed(self) -> int | None:
        return self.values["seed"]

    def note(self) -> str:
        """The page's line after filling the form in."""
        seed = f"seed {self.seed}" if self.seed is not None else "a random seed"
        ran = f"; its run was on {self.ran_on}" if self.ran_on else ""
        return f"Filled in from a share link ({seed}{ran}). {NOTE}"


# --------------------------------------------------------------------------- a run's form -> a link

def _plain(value):
    """A form value as JSON (a component's value is already; anything else becomes its text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def run_form(model: str | None, four_bit: bool, form: Values, seed: int | None, ran_on: str = "") -> dict:
    """What a run's record keeps of its form for a share link: the model, 4-bit, every field (the
    personas beyond the run's count left out) with `seed`, the seed the run used, in place of the
    seed box's value, and `ran_on` (the loaded model's `describe()`)."""
    defaults = {f.name: f.default for f in FIELDS if f.default is not REQUIRED}
    values = {name: form[name] if name in form else defaults.get(name) for name in FIELD_NAMES}
    try:
        count = int(number(values.get("n_personas"), "The number of personas", 2, whole=True))
    except InputError:
        count = MAX_PERSONAS
    unused = {name for label in LABELS[count:] for name in PERSONA_FIELDS[label]}
    fields = {name: _plain(value) for name, value in values.items() if name not in unused}
    fields["seed"] = seed
    return {"model": _plain(model), "four_bit": bool(four_bit), "ran_on": str(ran_on or ""), "fields": fields}


def encode(form: Mapping) -> str:
    """`run_form(...)` as the query parameter's value, ``1.<data>``."""
    data = json.dumps(form, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return f"{VERSION}." + base64.urlsafe_b64encode(zlib.compress(data, 9)).rstrip(b"=").decode("ascii")


def base_url(location: str) -> str:
    """The page's address without its query and fragment (the visitor's own parameters, Spaces'
    ``__sign`` token, an earlier link's form)."""
    parts = urlsplit(str(location or "").strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError("The page's address could not be read; copy it from the browser's address bar.")
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def link(location: str, form: Mapping | None) -> str:
    """The share link of a run whose record holds `form` (`run_form`), on the page at `location`
    (the browser's address)."""
    if not isinstance(form, Mapping) or not isinstance(form.get("fields"), Mapping):
        raise InputError("Run first: a share link holds a finished run's form and the seed it used.")
    value = encode(form)
    if len(value) > MAX_CHARS:
        raise InputError(f"This run's form is too long for a link ({len(value):,} characters encoded; at most "
                         f"{MAX_CHARS:,}); download the run's record instead.")
    return f"{base_url(location)}?{urlencode({PARAM: value})}"


# --------------------------------------------------------------------------- a link -> the form

def decode(value: str) -> dict:
    """A query parameter's value as the form it carries (unchecked), or an `InputError` (`DAMAGED`,
    `OTHER_VERSION`)."""
    value = str(value).strip()
    if len(value) > MAX_CHARS:
        raise InputError(DAMAGED)
    version, dot, data = value.partition(".")
    if not dot or not re.fullmatch(r"[A-Za-z0-9_-]*", data):
        raise InputError(DAMAGED)
    if version != VERSION:
        raise InputError(OTHER_VERSION if version.isdigit() else DAMAGED)
    try:
        packed = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        inflate = zlib.decompressobj()
        text = inflate.decompress(packed, MAX_JSON)
        if inflate.unconsumed_tail or not inflate.eof:
            raise InputError(DAMAGED)
        form = json.loads(text.decode("utf-8"))
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError, RecursionError):
        raise InputError(DAMAGED) from None
    if not isinstance(form, dict) or not isinstance(form.get("fields"), dict):
        raise InputError(DAMAGED)
    return form


def _checked(form: dict) -> tuple[str | None, bool, str, dict]:
    """The model, 4-bit, the run's description and the fields of a decoded link, each of the type the
    page's component takes, or an `InputError` (`DAMAGED`)."""
    model, four_bit, ran_on, fields = (form.get("model"), form.get("four_bit", False), form.get("ran_on", ""),
                                       form["fields"])
    scalar = (type(None), bool, int, float, str)
    if (not isinstance(model, (type(None), str)) or not isinstance(four_bit, bool) or not isinstance(ran_on, str)
            or set(fields) - set(FIELD_NAMES) or set(REQUIRED_FIELDS) - set(fields)):
        raise InputError(DAMAGED)
    for name, value in fields.items():
        if name == "methods":
            ok = value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        elif name in TEXT_FIELDS:
            ok = isinstance(value, (type(None), str))
        else:
            ok = isinstance(value, scalar)
        if not ok:
            raise InputError(DAMAGED)
    if not isinstance(fields["query"], str):
        raise InputError(DAMAGED)
    return model, four_bit, ran_on[:200], fields


def restore(access: Access, params: Mapping[str, str]) -> Shared | None:
    """The form a page address's query parameters carry (None without a share link), validated as a
    form typed in (`read_form`, `Access.check_model`): an `InputError` with the sentence a run would
    give, or `DAMAGED` / `OTHER_VERSION`."""
    value = params.get(PARAM) if params else None
    if value is None:
        return None
    model, four_bit, ran_on, fields = _checked(decode(value))
    lab_form = read_form(access, fields)
    access.check_model(model, four_bit)
    alpha = number(fields.get("alpha"), "Fusion α", 0.0)
    count = len(lab_form.preferences)
    known = set(P.presets().personas)
    values: dict[str, object] = {}
    for i, label in enumerate(LABELS):
        name_field, text_field = PERSONA_FIELDS[label]
        name = fields.get(name_field) if i < count else None
        values[name_field] = name if name in known else None  # a name is a label; the text is what decodes
        values[text_field] = lab_form.preferences.get(label, "")
    s = lab_form.settings
    values.update(
        query=fields["query"], lam=s.lam, roles="alternate" if s.alternate else "fixed", greedy=s.greedy,
        temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, max_new_tokens=s.max_new_tokens, seed=s.seed,
        methods=list(lab_form.specs), n_personas=count, alpha=alpha, weights=fields.get("weights") or "",
        repetition_penalty=s.repetition_penalty, no_repeat_ngram_size=s.no_repeat_ngram_size,
        reproducible=s.reproducible)
    return Shared(model=model, four_bit=four_bit, values={name: values[name] for name in FIELD_NAMES}, ran_on=ran_on)
