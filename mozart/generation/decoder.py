"""Autoregressive sampling for MozartGPT: a preallocated KV cache, the fast sampler and a slow reference sampler.

One step turns the model's last logits into the next token of every row:

    classifier-free guidance  logits = uncond + s * (cond - uncond)   (both streams in one batch; s = 1 skips uncond)
    repetition penalty        Pitch tokens seen in the last `repetition_window` tokens (structural tokens never)
    grammar mask              mozart.generation.grammar: tokens REMI does not allow here get -inf
    temperature, top-k, top-p transformers' TemperatureLogitsWarper / TopKLogitsWarper / TopPLogitsWarper
    sample                    torch.multinomial with the caller's torch.Generator (temperature 0 = greedy argmax)

transformers' RepetitionPenaltyLogitsProcessor penalises every token ever seen (rhythm needs Bar/Position/Velocity/
Duration repeated freely) and its CFG processor mixes log-softmaxed scores (the spec mixes raw logits): not used.

Length: a row stops at EOS, or when it samples the Bar that would open bar `target_bars + 1` (that Bar is dropped, so
the piece ends with its last bar complete), or after `max_new_tokens`. With `settings.end` (and a grammar and an EOS
id) the last bar is a closing sonority ended by EOS instead (mozart.generation.ending).

Beyond the model's context: a RoPE model (model.positions = rope) keeps one cached step per token with the rolling
KV cache of mozart.generation.rolling (`settings.attention_sinks` leading tokens plus the most recent ones); a
learned-position model's window slides instead ("refill"): the oldest half is dropped and the rest re-prefilled.
The grammar state is per piece, so it carries over either way.

`decode` (KV cache) and `decode_reference` (full recompute every token, no cache: the refill window, or for a RoPE
model past the context the rolling cache's kept tokens at its virtual positions) share the bookkeeping so tests
can check the cache token for token. Reduced-precision CPU weights: mozart.model.quantize (`for_inference`).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from tqdm import tqdm

from mozart.config import SampleConfig
from mozart.errors import ConfigError
from mozart.generation.ending import ClosingRule
from mozart.generation.grammar import PITCH, RemiGrammar
from mozart.generation.rolling import RollingKVCache, RollingLayout, prefill, uses_rolling


class KVCache:
    """Keys/values for every layer, preallocated as one (n_layer, B, n_head, max_len, head_dim) tensor each.

    Implements the protocol in docs/CONTRACTS.md: `pos`, `update(layer, k, v)`, `advance(n)`. Writing into a
    preallocated buffer avoids a torch.cat (and a fresh allocation) per layer per token. The model runs SDPA on the
    views it returns, so decoding equals full recompute. A compact bf16 cache with its own attention was measured
    and dropped (BENCHMARKS.md): 13 % faster at 2,048 tokens on one thread, 10-20 % slower on two.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_dim: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        shape = (n_layer, batch_size, n_head, max_len, head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self._layers = [(self.k[i], self.v[i]) for i in range(n_layer)]  # per-layer views, made once
        self.max_len = max_len
        self.pos = 0

    @classmethod
    def for_model(cls, model: Any, batch_size: int, max_len: int) -> "KVCache":
        cfg = model.config
        param = next(model.parameters())
        return cls(cfg.n_layer, batch_size, cfg.n_head, cfg.d_model // cfg.n_head, min(max_len, cfg.context),
                   device=param.device, dtype=param.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} > {self.max_len} positions")
        k_layer, v_layer = self._layers[layer]
        k_layer.narrow(2, self.pos, k.size(2)).copy_(k)
        v_layer.narrow(2, self.pos, v.size(2)).copy_(v)
        return k_layer.narrow(2, 0, end), v_layer.narrow(2, 0, end)

    def advance(self, n: int) -> None:
        self.pos += n

    def reset(self) -> None:
        self.pos = 0

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


@dataclass(frozen=True)
class SamplingSettings:
    """How one decoding step picks a token: the sampling fields of `SampleConfig`, under the same names.

    Build it with `from_config` (the sample stage and `mozart generate` both do, so their defaults are params.yaml's);
    SampleConfig has already checked the ranges. The defaults here are the neutral decoder (plain sampling from the
    model's distribution, no guidance), which the decoder's own tests use.
    """
    temperature: float = 1.0        # 0 = greedy (argmax)
    top_k: int = 0                  # 0 = off
    top_p: float = 1.0              # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    repetition_window: int = 64     # tokens looked back for the penalty
    cfg_scale: float = 1.0          # 1 = no guidance (the unconditional stream is not computed)
    end: bool = False               # close the piece at target_bars (mozart.generation.ending) instead of cutting it
    attention_sinks: int = 4        # RoPE models past the context: leading tokens the rolling KV cache keeps

    @classmethod
    def from_config(cls, cfg: SampleConfig, **overrides: Any) -> "SamplingSettings":
        """The settings `cfg` names; `overrides` replace single fields (e.g. cfg_scale=1.0 for an unguided batch)."""
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**fields, **overrides})

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0


@dataclass
class Generation:
    """Result of one batch: per row the full token list (prompt included), bars and why it stopped."""
    tokens: list[list[int]]
    n_prompt: int
    n_bars: list[int]
    stop_reason: list[str]          # "bars" | "eos" | "max_tokens"
    seconds: float
    n_steps: int                    # decoding steps run (tokens sampled per row)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_new(self) -> list[int]:
        return [len(t) - self.n_prompt for t in self.tokens]

    @property
    def tokens_per_s(self) -> float:
        return sum(self.n_new) / max(self.seconds, 1e-9)


class TokenPicker:
    """Raw logits of the (cond [+ uncond]) batch -> next token per row. Holds the precomputed settings.

    Temperature, top-k and top-p give exactly the values of transformers' Temperature/TopK/TopPLogitsWarper (the
    kept set and the filtered scores are bit-identical), but with one sort instead of a topk plus a sort and without
    the per-warper Python overhead; the draw is torch.multinomial's own one-sample fast path (exponential race with
    the caller's generator), so a seed gives the same tokens as before. Decoding is ~4 ms per token on a CPU, so the
    dozen small ops saved here matter.
    """

    def __init__(self, settings: SamplingSettings, vocab_size: int, penalisable: torch.Tensor | None):
        self.settings = settings
        self.penalisable = penalisable  # (vocab,) bool: only these tokens get the repetition penalty
        s = settings
        self.divide = s.temperature > 0 and s.temperature != 1.0
        self.top_k = min(s.top_k, vocab_size) if s.top_k > 0 else 0
        self.top_p = s.top_p < 1.0
        self.penalise = s.repetition_penalty != 1.0 and penalisable is not None

    def __call__(self, logits: torch.Tensor, history: torch.Tensor, allowed: torch.Tensor | None,
                 generator: torch.Generator | None) -> torch.Tensor:
        """logits (B or 2B, vocab); history (B, n) tokens so far (only the last repetition_window count)."""
        s = self.settings
        logits = logits.float()
        if s.guided:
            cond, uncond = logits.chunk(2)
            logits = uncond + s.cfg_scale * (cond - uncond)
        if self.penalise and history.size(1) > 0:
            logits = apply_repetition_penalty(logits, history[:, -s.repetition_window:], s.repetition_penalty,
                                              self.penalisable)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        if s.temperature == 0:
            return logits.argmax(dim=-1)
        if self.divide:
            logits = logits / s.temperature
        logits = self._top_k_top_p(logits)
        probs = torch.softmax(logits, dim=-1)
        # torch.multinomial(probs, 1, generator) without its input checks: its one-sample path is exactly this
        race = torch.empty_like(probs).exponential_(1, generator=generator)
        return probs.div_(race).argmax(dim=-1)

    def _top_k_top_p(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.top_p:
            if self.top_k:  # HF TopK: drop scores below the k-th largest
                kth = torch.topk(scores, self.top_k)[0][..., -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            return scores
        # One ascending sort serves both: top-k drops the sorted entries below the k-th largest, which leaves the
        # sorted values HF's TopP sees after TopK (dropped entries are -inf and sort first either way).
        sorted_logits, sorted_indices = torch.sort(scores, descending=False)
        if self.top_k:
            sorted_logits = sorted_logits.masked_fill(sorted_logits < sorted_logits[..., -self.top_k:-self.top_k + 1
                                                                                    or None], float("-inf"))
        cumulative = sorted_logits.softmax(dim=-1).cumsum_(dim=-1)
        remove = cumulative <= (1 - self.settings.top_p)
        remove[..., -1:] = False  # keep at least one token
        return scores.masked_fill(remove.scatter(1, sorted_indices, remove), float("-inf"))


def apply_repetition_penalty(logits: torch.Tensor, recent: torch.Tensor, penalty: float,
                             penalisable: torch.Tensor) -> torch.Tensor:
    """HF's formula (positive logits / penalty, negative * penalty) on penalisable tokens present in `recent`."""
    present = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, recent, True) & penalisable
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(present, penalised, logits)


class _Bookkeeper:
    """Token buffer, grammar state, bar counts and stop flags shared by the fast and the reference sampler."""

    def __init__(self, model: Any, prompt: torch.Tensor, composer_id: torch.Tensor, settings: SamplingSettings,
                 max_new_tokens: int, target_bars: int | None, grammar: RemiGrammar | None, eos_id: int | None,
                 bar_id: int | None, rolling: bool = False):
        device = next(model.parameters()).device
        B, T0 = prompt.shape
        if T0 == 0:
            raise ConfigError("the prompt must hold at least one token (e.g. BOS)")
        self.B, self.n_prompt, self.settings = B, T0, settings
        self.context = model.config.context
        self.keep = max(1, self.context // 2)  # tokens kept when the window slides
        self.seq = torch.empty(B, T0 + max_new_tokens, dtype=torch.long, device=device)
        self.seq[:, :T0] = prompt.to(device)
        self.n = T0  # tokens in the buffer (same for every row; finished rows keep a recorded end)
        # past the context a RoPE model rolls (the cache keeps what it attends to); else the window slides
        self.layout = (RollingLayout.for_context(self.context, settings.attention_sinks)
                       if rolling and uses_rolling(model, T0 + max_new_tokens) else None)
        self.start = 0 if T0 <= self.context or self.layout is not None else T0 - self.keep  # first in the window
        # (B,) composer ids, or (B, n_composers) blend weights; zeros are the unconditional stream either way
        cid = composer_id.to(device) if composer_id.is_floating_point() else composer_id.to(device).long()
        self.model_cid = torch.cat([cid, torch.zeros_like(cid)]) if settings.guided else cid
        vocab_size = model.config.vocab_size
        penalisable = None
        if grammar is not None:
            grammar.to(device)
            penalisable = grammar.token_class == PITCH
            # without an eos_id nothing would end a row at EOS, so the grammar must never offer it
            min_bars = (target_bars or 0) if eos_id is not None else 2**62
            self.grammar_state = grammar.start(B, min_bars=min_bars)
            grammar.feed_prompt(self.grammar_state, self.seq[:, :T0])
            bar_id = grammar.bar_id
        self.grammar = grammar
        self.closing = (ClosingRule(grammar, target_bars)
                        if settings.end and grammar is not None and target_bars and eos_id is not None else None)
        self.picker = TokenPicker(settings, vocab_size, penalisable)
        self.bar_id = bar_id if bar_id is not None else -1
        self.eos_id = eos_id if eos_id is not None else -1
        self.target_bars = target_bars
        self.n_bars = (self.seq[:, :T0] == self.bar_id).sum(1)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.any_finished = False  # Python mirror of finished.any(): skips a mask op per step until a row ends
        self.end = torch.full((B,), T0 + max_new_tokens, dtype=torch.long, device=device)
        self.reason = ["max_tokens"] * B

    def window(self) -> torch.Tensor:
        """The model's input window of every stream (cond rows, then uncond rows when guided)."""
        w = self.seq[:, self.start:self.n]
        return torch.cat([w, w]) if self.settings.guided else w

    def kept_window(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Rolling mode: the tokens the rolling cache attends to for the last token (every stream) and their
        virtual positions (mozart.generation.rolling.RollingLayout.kept)."""
        kept, virtual = self.layout.kept(self.n - 1)
        w = self.seq[:, kept]
        return (torch.cat([w, w]) if self.settings.guided else w), torch.tensor(virtual)

    def slide_if_full(self) -> bool:
        """Drop the oldest half of the window when it no longer fits the context; True if it slid (never when the
        model rolls)."""
        if self.layout is None and self.n - self.start > self.context:
            self.start = self.n - self.keep
            return True
        return False

    def step(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Pick and record the next token of every row from the last-position logits; returns it (B,)."""
        allowed = None
        if self.grammar is not None:
            allowed = self.grammar.allowed(self.grammar_state)
            if self.closing is not None:
                allowed = self.closing.restrict(self.grammar_state, allowed)
                logits = logits + self.closing.eos_bias(self.grammar_state, logits.size(0) // self.B)
            if self.any_finished:
                allowed |= self.finished[:, None]
        nxt = self.picker(logits, self.seq[:, :self.n], allowed, generator)
        is_bar = nxt == self.bar_id
        stop_bars = is_bar & (self.n_bars >= self.target_bars) if self.target_bars else torch.zeros_like(is_bar)
        stop = (stop_bars | (nxt == self.eos_id)) & ~self.finished
        if bool(stop.any()):
            self.any_finished = True
            # the closing Bar is not kept; EOS is (decoders drop it)
            for row in stop.nonzero().flatten().tolist():
                self.reason[row] = "bars" if bool(stop_bars[row]) else "eos"
            self.end = torch.where(stop, self.n + (~stop_bars).long(), self.end)
            self.finished |= stop
        self.n_bars += (is_bar & ~self.finished).long()
        if self.grammar is not None:
            self.grammar.feed(self.grammar_state, nxt)
        self.seq[:, self.n] = nxt
        self.n += 1
        return nxt

    def result(self, seconds: float, n_steps: int) -> Generation:
        ends = torch.minimum(self.end, torch.tensor(self.n)).tolist()
        rows = [self.seq[b, :ends[b]].tolist() for b in range(self.B)]
        if self.grammar is not None:  # a row cut at the token limit may end inside a note: drop that note
            rows = [r if self.reason[b] != "max_tokens" else r[:max(self.n_prompt, self.grammar.complete_length(r))]
                    for b, r in enumerate(rows)]
        return Generation(tokens=rows, n_prompt=self.n_prompt, n_bars=self.n_bars.tolist(),
                          stop_reason=list(self.reason), seconds=seconds, n_steps=n_steps)


def _check(model: Any, prompt: torch.Tensor, composer_id: torch.Tensor, max_new_tokens: int) -> None:
    n_composers = model.config.n_composers
    blend = composer_id.is_floating_point()
    if prompt.dim() != 2 or composer_id.shape != ((prompt.size(0), n_composers) if blend else (prompt.size(0),)):
        raise ValueError(f"prompt must be (B, T) and composer_id (B,) ids or (B, n_composers) blend weights; got "
                         f"{tuple(prompt.shape)} and {tuple(composer_id.shape)}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if blend:
        if bool((composer_id < 0).any()):
            raise ConfigError(f"composer blend weights must be >= 0: {composer_id.tolist()}")
    elif int(composer_id.max()) >= model.config.n_composers or int(composer_id.min()) < 0:
        raise ConfigError(f"composer id out of range 0..{model.config.n_composers - 1}: {composer_id.tolist()}")


@torch.inference_mode()
def decode(model: Any, prompt: torch.Tensor, composer_id: torch.Tensor, settings: SamplingSettings, *,
             max_new_tokens: int, target_bars: int | None = None, grammar: RemiGrammar | None = None,
             eos_id: int | None = None, bar_id: int | None = None, generator: torch.Generator | None = None,
             progress: bool = False, on_progress: Callable[[int], None] | None = None,
             rolling: bool = True) -> Generation:
    """Sample up to `max_new_tokens` after `prompt` (B, T) for every row, with a KV cache (the fast path).

    All rows share the prompt length (the cache has one `pos`); composer_id is (B,) ids or (B, n_composers) blend
    weights (MozartGPT.composer_vector). With settings.cfg_scale != 1 the batch doubles internally: rows B..2B-1 are
    the unconditional stream (composer 0) fed the same tokens. `on_progress(bars)` is called every 32 steps with the
    bars the slowest row has (for a caller's own progress display, e.g. `mozart serve`). Past the context a RoPE
    model uses the rolling KV cache (module docstring); `rolling=False` makes it refill like a learned-position
    model (benchmarks/rolling_cache.py compares the two).
    """
    _check(model, prompt, composer_id, max_new_tokens)
    t0 = time.perf_counter()
    book = _Bookkeeper(model, prompt, composer_id, settings, max_new_tokens, target_bars, grammar, eos_id, bar_id,
                       rolling)
    streams = book.model_cid.size(0)
    if book.layout is not None:
        cache = RollingKVCache.for_model(model, streams, settings.attention_sinks)
        logits = prefill(model, book.window(), book.model_cid, cache)
    else:
        cache = KVCache.for_model(model, streams, book.n_prompt + max_new_tokens)
        logits = model(book.window(), book.model_cid, cache=cache)[0][:, -1]
    # progress in bars when a bar target is set (the slowest row), else in tokens; refreshed every 32 steps
    bar = tqdm(total=target_bars or max_new_tokens, desc="generating", unit="bar" if target_bars else "tok",
               disable=None if progress else True, leave=False)
    steps = 0
    for steps in range(1, max_new_tokens + 1):
        nxt = book.step(logits, generator)
        if steps % 32 == 0 and not bar.disable:
            bar.n = int(book.n_bars.min()) if target_bars else steps
            bar.refresh()
        if steps % 32 == 0 and on_progress is not None:
            on_progress(int(book.n_bars.min()))
        if steps == max_new_tokens or (book.any_finished and bool(book.finished.all())):
            break
        # learned positions (or rolling=False): re-prefill the kept half; the grammar state lives in `book`, untouched
        if book.slide_if_full():
            cache.reset()
            logits = model(book.window(), book.model_cid, cache=cache)[0][:, -1]
            continue
        idx = nxt[:, None]
        if settings.guided:
            idx = idx.repeat(2, 1)
        logits = model(idx, book.model_cid, cache=cache)[0][:, -1]
    bar.close()
    result = book.result(time.perf_counter() - t0, steps)
    result.extra["kv_cache_bytes"] = cache.nbytes()
    return result


@torch.inference_mode()
def decode_reference(model: Any, prompt: torch.Tensor, composer_id: torch.Tensor, settings: SamplingSettings, *,
                       max_new_tokens: int, target_bars: int | None = None, grammar: RemiGrammar | None = None,
                       eos_id: int | None = None, bar_id: int | None = None,
                       generator: torch.Generator | None = None, rolling: bool = True) -> Generation:
    """The slow reference: recompute the whole window every token, no cache. Same results as `decode`, except
    past the context of a RoPE model with more than one layer (mozart.generation.rolling: a cached key of a deeper
    layer keeps the window its token saw)."""
    _check(model, prompt, composer_id, max_new_tokens)
    t0 = time.perf_counter()
    book = _Bookkeeper(model, prompt, composer_id, settings, max_new_tokens, target_bars, grammar, eos_id, bar_id,
                       rolling)
    steps = 0
    for steps in range(1, max_new_tokens + 1):
        if book.layout is not None:
            tokens, positions = book.kept_window()
            logits = model(tokens, book.model_cid, positions=positions.to(tokens.device))[0][:, -1]
        else:
            book.slide_if_full()
            logits = model(book.window(), book.model_cid)[0][:, -1]
        book.step(logits, generator)
        if bool(book.finished.all()):
            break
    return book.result(time.perf_counter() - t0, steps)
