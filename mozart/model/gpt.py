"""MozartGPT: a compact decoder-only transformer (GPT-2 style) conditioned on a composer id.

Architecture: the seed recipe (pre-LayerNorm blocks, GELU MLP, dropout, weight tying between the token embedding and
the output head) with `config.positions` choosing the positions: `rope` (rotary q/k, mozart.model.rope; the default
since issue 13) or `learned` (the seed's absolute embedding `wpe`; a config.json without the key is such a model). A composer embedding is added to every token embedding; id 0 is the
unconditional path and its embedding row is fixed at zero (padding_idx), so `composer_id = 0` is exactly "no
composer" — the path classifier-free guidance needs.

Why our own module rather than `transformers.GPT2LMHeadModel` (the issue's suggestion)? Measured on this 2-core CPU
(benchmarks/train.py, seed width, seq 1024, batch 2, bf16 autocast, best of 2 rounds, load ~1): this module 1,808
tokens/s, HF GPT-2 with SDPA attention (and no attention dropout) 1,781 tokens/s, the HF eager baseline 698 — so speed
is a tie with HF+SDPA, and both are ~2.6x the baseline. The gain comes from SDPA's flash kernel and from not dropping
out attention probabilities (dropout_p > 0 forces SDPA onto the math path: 1.75x slower). We keep our own ~150 lines
because they implement the KV cache protocol of docs/CONTRACTS.md directly, add the composer embedding without
patching HF internals, and do not tie saved models to a transformers version.

A model directory holds `config.json` (GPTConfig), `model.safetensors` (no pickle), `tokenizer.json` and
`composers.json`; `load_model` rebuilds the model from it (config and weights checked by mozart.model.directory) and
refuses pickle checkpoints unless asked.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mozart.config import ModelConfig
from mozart.infra.atomic import atomic_dir
from mozart.errors import MozartError
from mozart.model.directory import CONFIG_FILE, WEIGHTS_FILE, read_model_config, read_weights
from mozart.model.rope import Rotary, apply_rope

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """What `config.json` holds: the params.yaml `model` section (ModelConfig) plus what the data decides."""
    vocab_size: int = 220
    n_composers: int = 1       # including id 0 = unconditional
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = {"positions": "learned", **d}  # saved before issue 13: every such model has learned positions
        return cls(**{k: v for k, v in d.items() if k in names})


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model)
        self.c_proj = nn.Linear(config.d_model, config.d_model)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: Any = None, rope: Any = None) -> torch.Tensor:
        """rope: None (learned positions) or the (cos, sin) of the T new positions."""
        B, T, C = x.shape
        if T == 1 and cache is not None and cache.pos > 0:
            return self._decode_one(x, cache, rope)
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:
            past = cache.pos
            k, v = cache.update(self.layer, k, v)
        # No dropout on attention probabilities: with dropout_p > 0 SDPA leaves its flash kernel on CPU for the math
        # path that materialises (B, H, T, T) scores and masks — 1.75x slower training measured at seq 1024.
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)
        elif T == 1:  # one new token sees everything cached
            y = F.scaled_dot_product_attention(q, k, v)
        else:  # a chunk after a prefix: query i (position past+i) sees keys 0..past+i
            S = k.size(2)
            mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return self.resid_dropout(y) if self.training else y  # eval: skip the no-op module call (decode speed)

    def _decode_one(self, x: torch.Tensor, cache: Any, rope: Any) -> torch.Tensor:
        """One new token after a cached prefix: the same values as the general path with half its small ops
        (views instead of split/transpose/reshape; decoding a token on a CPU is ~40 % Python and op overhead)."""
        B, _, C = x.shape
        qkv = self.c_attn(x).view(B, 3, self.n_head, 1, C // self.n_head)
        q, k = qkv[:, 0], qkv[:, 1]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        k, v = cache.update(self.layer, k, qkv[:, 2])
        y = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(y.reshape(B, 1, C))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff)
        self.c_proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))
        return self.dropout(y) if self.training else y


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: Any = None, rope: Any = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, rope)
        return x + self.mlp(self.ln_2(x))


class MozartGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False   # recompute block activations in backward: less memory, ~30% slower
        self.label_smoothing = 0.0            # set by the trainer (train.label_smoothing); 0 for evaluation
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.context, config.d_model)
        else:  # no weights: cos/sin tables (non-persistent buffers)
            self.rotary = Rotary(config.d_model // config.n_head, config.rope_base, config.context)
        self.wce = nn.Embedding(config.n_composers, config.d_model, padding_idx=0)  # row 0 = unconditional = zeros
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        with torch.no_grad():
            self.wce.weight[0].zero_()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameter count (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def composer_vector(self, composer: torch.Tensor) -> torch.Tensor:
        """(B, d_model) conditioning: the embedding row of each composer id ((B,) long), or a blend ((B, n_composers)
        float weights, one row per sample): the weighted sum of the composers' embedding rows. A one-hot row gives
        that composer's own row exactly (every other product is an exact zero); all-zero weights are unconditional."""
        if composer.dim() == 2:
            return composer.to(self.wce.weight.dtype) @ self.wce.weight
        return self.wce(composer)

    def forward(self, idx: torch.Tensor, composer_id: torch.Tensor, targets: torch.Tensor | None = None,
                cache: Any = None, positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) long, composer_id (B,) long or (B, n_composers) blend weights (see `composer_vector`)
        -> (logits (B, T, vocab), loss or None).

        With `cache` (see docs/CONTRACTS.md) the new tokens sit at positions cache.pos .. cache.pos+T-1; a cache with
        `rolling = True` lets a RoPE model's positions run past the context. `positions` ((T,) ints, RoPE only, no
        cache) rotates token i at positions[i] instead of i: the slow reference of the rolling cache
        (mozart.generation.rolling) recomputes its kept window at the cache's virtual positions with it.
        The loss ignores targets equal to pad_id and uses `self.label_smoothing`.
        """
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        rolling = getattr(cache, "rolling", False)  # a rolling cache (RoPE only) keeps attention inside the context
        if start + T > self.config.context and not (rolling and self.config.positions == "rope"):
            raise MozartError(f"sequence of {start + T} tokens exceeds the model context of {self.config.context}; "
                              "generate fewer tokens or use a sliding window")
        if positions is not None and (cache is not None or self.config.positions != "rope"):
            raise ValueError("explicit positions need a RoPE model and no cache")
        x = self.wte(idx) + self.composer_vector(composer_id)[:, None, :]
        rope = None
        if self.config.positions == "learned":
            # wpe rows start..start+T-1 as a slice (same values as looking up arange(start, start+T), one op less)
            x = x + self.wpe.weight[start:start + T]
        elif positions is not None:
            rope = self.rotary.at(positions)
        else:
            rope = self.rotary.cos_sin(start, T)
        if self.training:
            x = self.drop(x)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(block, x, None, rope, use_reentrant=False)
            else:
                x = block(x, cache, rope)
        if cache is not None:
            cache.advance(T)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                               ignore_index=self.config.pad_id, label_smoothing=self.label_smoothing)
        return logits, loss


# ----------------------------------------------------------------------------------------------------------------
# Saving and loading: one directory, safetensors weights, no pickle.

def weights_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors without the tied head (safetensors refuses shared storage)."""
    model = unwrap(model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain MozartGPT behind DDP and torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):         # DistributedDataParallel
            model = model.module
        elif hasattr(model, "_orig_mod"):    # torch.compile
            model = model._orig_mod
        else:
            return model


def save_model(model: nn.Module, out_dir: str | Path, tokenizer_json: str | Path | None,
               composers_json: str | Path | None) -> Path:
    """Write `out_dir/` atomically: config.json, model.safetensors, tokenizer.json, composers.json."""
    from safetensors.torch import save_file

    model = unwrap(model)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(model.config), indent=2, sort_keys=True) + "\n")
        save_file(weights_state_dict(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        for src, name in ((tokenizer_json, "tokenizer.json"), (composers_json, "composers.json")):
            if src is not None:
                shutil.copyfile(src, tmp / name)
    return out_dir


def _load_pickle(path: Path, model_dir: Path) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    obj = torch.load(path, map_location="cpu", weights_only=False)
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if isinstance(obj, dict) and "config" in obj:
        config = GPTConfig.from_dict(obj["config"])
    elif (model_dir / CONFIG_FILE).is_file():
        config = GPTConfig.from_dict(json.loads((model_dir / CONFIG_FILE).read_text()))
    else:
        raise MozartError(f"{path} holds no model config and {model_dir / CONFIG_FILE} is missing")
    return config, state


def load_model(model_dir: str | Path, device: str | torch.device = "cpu", allow_pickle: bool = False) -> MozartGPT:
    """Rebuild a MozartGPT (in eval mode) from a model directory written by `save_model`.

    Pickle files (.pt/.bin/...) can run arbitrary code when loaded, so they are refused unless allow_pickle=True.
    """
    path = Path(model_dir)
    if path.is_file() and path.suffix in PICKLE_SUFFIXES:
        pickle_file, model_dir = path, path.parent
    elif (path / WEIGHTS_FILE).is_file():
        pickle_file, model_dir = None, path
    else:
        pickles = sorted(p for p in path.glob("*") if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
        if not pickles:
            raise MozartError(f"{path} is not a model directory (no {WEIGHTS_FILE}): train a model first "
                              "(`dvc repro train`) or pass the folder that holds config.json and model.safetensors")
        pickle_file, model_dir = pickles[0], path
    if pickle_file is not None:
        if not allow_pickle:
            raise MozartError(f"refusing to load pickle file {pickle_file}: pickle can run arbitrary code. Convert it "
                              "to a model directory with model.safetensors, or pass allow_pickle=True if you trust it")
        config, state = _load_pickle(pickle_file, model_dir)
    else:  # config.json's schema, the file's completeness and every tensor shape are checked before loading
        config = read_model_config(model_dir)
        state = read_weights(model_dir, config)
    model = MozartGPT(config)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise MozartError(f"{model_dir} does not match its config.json (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]}): the directory is corrupt or from another model version")
    return model.to(device).eval()
