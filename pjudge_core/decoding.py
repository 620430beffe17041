"""Persona-judge decoding (arXiv 2504.12663, Algorithm 1) and the direct-prompting baseline.

Contract:
  * One copy of the weights. Each preference (role) has its own prompt and its own explicit
    `DynamicCache` (`RoleCache`), so no padding is needed and each forward is a batch of one.
  * A block, exactly as Algorithm 1: the drafter samples t_1..t_k from q (k = min(λ, tokens left),
    fewer if it drafts end-of-sequence), one forward of the judge over all drafts gives
    p_1..p_{k+1}; t_i is accepted when u_i <= p_i(t_i)/q_i(t_i); at the first rejection the token
    is resampled from norm(max(0, p_i - q_i)) and the block ends; after λ accepts a bonus token
    comes from p_{λ+1}. Roles swap after every block (``alternate=True``) or never
    (Persona-judge-Base).
  * Nothing is recomputed: a cache only ever receives tokens it has not seen; after a rejection
    both caches are cropped back to the committed text. The resampled or bonus token is in
    neither cache; the next forward of each role feeds it.
  * Stops at end-of-sequence or after ``max_new_tokens``, whichever comes first.
  * `stream_*` return a `Stream`: iterate it to receive each `Step` as soon as it is decided
    (the tokens of a block are decided together, by the judge's forward);
    ``stream.result`` holds the `Result` once the iteration has finished.
  * All randomness comes from `Uniforms(seed)`, keyed by output position: the same seed gives the
    same tokens, and `reference.py` (the same algorithm without caches) gives them too.

Why blocks and not a lock-step batch of both roles: on CPU, PyTorch's matmul for a batch of
two costs ~1.5-2x that of a batch of one (measured with SmolLM2-135M), while drafting with
batch-one forwards and judging λ tokens in one forward costs ~(λ + 1.3)/(λ + 1) per token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from transformers import DynamicCache

from .errors import InputError
from .loading import LoadedModel
from .prompting import combine_preferences, prompt_ids, prompt_text
from .sampling import (
    JudgedToken,
    SamplingConfig,
    Uniforms,
    choose,
    greedy_judging,
    speculative_sampling,
    warped_probs,
)
from .trace import Result, Step, run_stats

OTHER = {"A": "B", "B": "A"}


# Architectures whose causal-LM head is exactly `lm_head(hidden)`: no soft-capping, no logit scale.
PLAIN_HEAD_MODELS = {"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3", "olmo2"}


def uses_split_projection(model) -> bool:
    """Project hidden states to logits ourselves on CPU float32 for plain-head architectures.

    Why: on CPU, MKL's matrix-vector path for ``hidden @ W.T`` with W the (vocab x hidden)
    head is ~2.5x slower than the matrix-matrix path of ``W @ hidden.T`` with two columns
    (SmolLM2: 11 ms vs 4.5 ms per token, most of a drafter forward's overhead). GPUs and
    other architectures use the model's own forward.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return (
        model.device.type == "cpu"
        and getattr(model.config, "model_type", None) in PLAIN_HEAD_MODELS
        and isinstance(head, torch.nn.Linear) and head.bias is None
        and head.weight.dtype == torch.float32
    )


def project_to_vocabulary(model, hidden: torch.Tensor) -> torch.Tensor:
    """Logits (positions, vocab) = hidden @ W.T, computed as (W @ hidden.T).T with >= 2 columns."""
    weight = model.get_output_embeddings().weight
    rows = hidden.shape[0]
    if rows == 1:
        hidden = torch.cat([hidden, hidden])  # two columns select MKL's fast matrix-matrix kernel
    return (weight @ hidden.T).T[:rows]


class RoleCache:
    """One role's prompt and KV cache over prompt + output tokens.

    `logits(output, keep)` feeds the tokens of ``prompt + output`` the cache has not seen yet, in
    one forward, and returns the logits of the last `keep` positions. `crop(n)` forgets every
    output token from index n on. `forward_passes` counts forwards.
    """

    def __init__(self, model, prompt: Sequence[int]):
        self.model = model
        self.prompt = list(prompt)
        self.cache = DynamicCache(config=model.config)
        self.seen = 0  # tokens of prompt + output held in the cache
        self.forward_passes = 0
        self.split_projection = uses_split_projection(model)

    def logits(self, output: Sequence[int], keep: int = 1) -> torch.Tensor:
        sequence = self.prompt + list(output)
        new = sequence[self.seen:]
        if len(new) < keep:
            raise ValueError("asked for logits of positions that are already cached")
        ids = torch.tensor([new], dtype=torch.long, device=self.model.device)
        with torch.no_grad():
            if self.split_projection:
                hidden = self.model.get_decoder()(input_ids=ids, past_key_values=self.cache, use_cache=True)
                logits = project_to_vocabulary(self.model, hidden.last_hidden_state[0, -keep:, :])
            else:
                out = self.model(input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=keep)
                logits = out.logits[0, -keep:, :]
        self.forward_passes += 1
        self.seen = len(sequence)
        return logits

    def crop(self, output_length: int) -> None:
        length = len(self.prompt) + output_length
        if self.seen > length:
            self.cache.crop(-(self.seen - length))  # transformers 5: negative = tokens to remove
            self.seen = length


class IncrementalDetokenizer:
    """Text of each new token, holding back incomplete UTF-8 sequences (prefix/read offsets)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        text = self._decode(self.ids[self.prefix_offset:])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return text[len(prefix):]
        return ""

    def flush(self) -> str:
        """Whatever push() held back (an unfinished character at the very end)."""
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        return self._decode(self.ids[self.prefix_offset:])[len(prefix):]


class Stream:
    """Iterate to get Steps as they are decided; `.result` is set when the run has finished."""

    def __init__(self, steps: Iterator[Step]):
        self._steps = steps
        self.result: Result | None = None

    def __iter__(self) -> Iterator[Step]:
        self.result = yield from self._steps

    def close(self) -> None:
        self._steps.close()

    def run(self) -> Result:
        for _ in self:
            pass
        return self.result


class _Recorder:
    """Bookkeeping shared by both methods: steps, token text, timing, stop reason, the Result."""

    def __init__(self, lm: LoadedModel, method: str, settings: dict, ignore_eos: bool):
        self.lm = lm
        self.method = method
        self.settings = settings
        self.ignore_eos = ignore_eos
        self.detok = IncrementalDetokenizer(lm.tokenizer)
        self.steps: list[Step] = []
        self.started = time.perf_counter()

    def step(self, p: torch.Tensor, q: torch.Tensor | None, judged: JudgedToken, **fields) -> Step:
        token = judged.token_id
        step = Step(
            index=len(self.steps),
            token_id=token,
            text=self.detok.push(token),
            p=float(p[token]),
            q=None if q is None else float(q[token]),
            decision=judged.decision,
            u=None if judged.u is None else float(judged.u),
            **fields,
        )
        if judged.rejected_token_id is not None:
            rejected = judged.rejected_token_id
            step.rejected_token_id = rejected
            step.rejected_text = self.lm.tokenizer.decode([rejected])
            step.rejected_p = float(p[rejected])
            step.rejected_q = float(q[rejected])
        self.steps.append(step)
        return step

    def is_eos(self, token_id: int) -> bool:
        return not self.ignore_eos and token_id in self.lm.eos_token_ids

    def result(self, forward_passes: int, prompts: list[list[int]]) -> Result:
        ids = [s.token_id for s in self.steps]
        last = ids[-1] if ids else None
        stats = run_stats(
            self.steps,
            seconds=time.perf_counter() - self.started,
            forward_passes=forward_passes,
            prompt_tokens=[len(p) for p in prompts],
            stopped_by="eos" if last is not None and self.is_eos(last) else "max_new_tokens",
        )
        if self.steps:
            self.steps[-1].text += self.detok.flush()
        text = self.lm.tokenizer.decode(ids, skip_special_tokens=True)
        return Result(self.method, text, ids, self.steps, stats, self.settings)


def _check_lengths(lm: LoadedModel, prompts: list[list[int]], max_new_tokens: int) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InputError("max_new_tokens must be a whole number of at least 1.")
    context = lm.context_length
    longest = max(len(p) for p in prompts)
    if context and longest + max_new_tokens > context:
        raise InputError(
            f"The prompt is {longest} tokens; with {max_new_tokens} new tokens it exceeds the model's "
            f"context of {context} tokens. Shorten the query or preferences, or lower max new tokens."
        )


def _require_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} is empty; write a preference text or pick a preset.")
    return value


def stream_persona_judge(
    lm: LoadedModel,
    query: str,
    pref_a: str,
    pref_b: str,
    *,
    max_new_tokens: int = 128,
    lam: int = 4,
    alternate: bool = True,
    temperature: float = 0.9,
    top_k: int = 20,
    top_p: float = 0.9,
    greedy: bool = False,
    seed: int | None = None,
    ignore_eos: bool = False,
) -> Stream:
    """Persona-judge as a stream of Steps. Validation happens here, before the first step."""
    _require_text(pref_a, "Preference A")
    _require_text(pref_b, "Preference B")
    if isinstance(lam, bool) or not isinstance(lam, int) or lam < 1:
        raise InputError("λ (tokens drafted per block) must be a whole number of at least 1.")
    sampling = SamplingConfig(temperature, top_k, top_p, greedy)
    prompts = [prompt_ids(lm.tokenizer, query, [pref_a]), prompt_ids(lm.tokenizer, query, [pref_b])]
    _check_lengths(lm, prompts, max_new_tokens)
    uniforms = Uniforms(seed)
    settings = {
        "method": "persona-judge", "model": lm.name, "query": query,
        "pref_a": pref_a, "pref_b": pref_b, "max_new_tokens": max_new_tokens, "lam": lam,
        "alternate": alternate, **sampling.to_dict(), "seed": uniforms.seed,
        "prompts": {
            "A": prompt_text(lm.tokenizer, query, [pref_a]),
            "B": prompt_text(lm.tokenizer, query, [pref_b]),
        },
    }
    recorder = _Recorder(lm, "persona-judge", settings, ignore_eos)
    return Stream(_persona_judge_steps(lm, prompts, recorder, sampling, uniforms, max_new_tokens, lam, alternate))


def _persona_judge_steps(lm, prompts, recorder, sampling, uniforms, max_new_tokens, lam, alternate):
    roles = {"A": RoleCache(lm.model, prompts[0]), "B": RoleCache(lm.model, prompts[1])}
    processors, greedy = sampling.processors(), sampling.greedy
    output: list[int] = []
    drafter, block = "A", 0
    while len(output) < max_new_tokens and not (output and recorder.is_eos(output[-1])):
        judge, start = OTHER[drafter], len(output)

        # 1. The drafter samples t_1..t_k from q autoregressively (k <= λ, stopping at EOS).
        drafts, qs = [], []
        while len(drafts) < min(lam, max_new_tokens - start):
            q = warped_probs(roles[drafter].logits(output + drafts), processors)[0]
            drafts.append(choose(q, uniforms.at(start + len(drafts))[Uniforms.DRAFT], greedy))
            qs.append(q)
            if recorder.is_eos(drafts[-1]):
                break

        # 2. The judge scores every draft, and the position after them, in one forward: p_1..p_{k+1}.
        ps = warped_probs(roles[judge].logits(output + drafts, keep=len(drafts) + 1), processors)

        # 3. Accept t_i while u_i <= p_i(t_i)/q_i(t_i); resample from norm(max(0, p - q)) at the first rejection.
        for i, (draft, p, q) in enumerate(zip(drafts, ps, qs)):
            _, accept_u, resample_u = uniforms.at(start + i)
            judged = greedy_judging(p, q, draft) if greedy else speculative_sampling(p, q, draft, accept_u, resample_u)
            output.append(judged.token_id)
            yield recorder.step(p, q, judged, block=block, drafter=drafter)
            if judged.decision == "resampled" or recorder.is_eos(judged.token_id):
                break
        else:
            # 4. All λ drafts accepted: a bonus token from the judge's p_{λ+1}.
            if len(drafts) == lam and len(output) < max_new_tokens:
                bonus = choose(ps[-1], uniforms.at(len(output))[Uniforms.RESAMPLE], greedy)
                output.append(bonus)
                yield recorder.step(ps[-1], None, JudgedToken(bonus, "bonus"), block=block, drafter=drafter)

        # 5. Forget rejected drafts; swap the roles (Persona-judge) or keep them (Persona-judge-Base).
        accepted = start + sum(s.decision == "accepted" for s in recorder.steps[start:])
        for role in roles.values():
            role.crop(accepted)
        block += 1
        if alternate:
            drafter = OTHER[drafter]
    return recorder.result(sum(r.forward_passes for r in roles.values()), prompts)


def stream_direct(
    lm: LoadedModel,
    query: str,
    prefs: Sequence[str] | str = (),
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.9,
    top_k: int = 20,
    top_p: float = 0.9,
    greedy: bool = False,
    seed: int | None = None,
    ignore_eos: bool = False,
) -> Stream:
    """Direct prompting: all preferences combined into one prompt, plain sampling."""
    prefs = [prefs] if isinstance(prefs, str) else list(prefs)
    sampling = SamplingConfig(temperature, top_k, top_p, greedy)
    prompts = [prompt_ids(lm.tokenizer, query, prefs)]
    _check_lengths(lm, prompts, max_new_tokens)
    uniforms = Uniforms(seed)
    settings = {
        "method": "direct", "model": lm.name, "query": query, "preferences": prefs,
        "instruction": combine_preferences(prefs), "max_new_tokens": max_new_tokens,
        **sampling.to_dict(), "seed": uniforms.seed,
        "prompt": prompt_text(lm.tokenizer, query, prefs),
    }
    recorder = _Recorder(lm, "direct", settings, ignore_eos)
    return Stream(_direct_steps(lm, prompts, recorder, sampling, uniforms, max_new_tokens))


def _direct_steps(lm, prompts, recorder, sampling, uniforms, max_new_tokens):
    role = RoleCache(lm.model, prompts[0])
    processors = sampling.processors()
    output: list[int] = []
    for position in range(max_new_tokens):
        p = warped_probs(role.logits(output), processors)[0]
        token = choose(p, uniforms.at(position)[Uniforms.DRAFT], sampling.greedy)
        output.append(token)
        yield recorder.step(p, p, JudgedToken(token, "sampled"))
        if recorder.is_eos(token):
            break
    return recorder.result(role.forward_passes, prompts)


def persona_judge(lm: LoadedModel, query: str, pref_a: str, pref_b: str, **kwargs) -> Result:
    """Run Persona-judge to the end; see `stream_persona_judge` for the keywords."""
    return stream_persona_judge(lm, query, pref_a, pref_b, **kwargs).run()


def direct_prompt(lm: LoadedModel, query: str, prefs: Sequence[str] | str = (), **kwargs) -> Result:
    """Run direct prompting to the end; see `stream_direct` for the keywords."""
    return stream_direct(lm, query, prefs, **kwargs).run()
