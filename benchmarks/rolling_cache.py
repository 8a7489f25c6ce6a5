"""Generation past the context: the rolling KV cache (RoPE) against refill (drop half the window, re-prefill).

(a) Speed: tokens/s of the RoPE model generating `--multiple` x its context with the rolling cache, against the same
model and batch within the context (context - 1 new tokens, the plain KV cache) and against refill at the same
length (`decode(rolling=False)`); the learned-position model's refill beside them. Sampling as the pipeline does it
(grammar mask, top-p 0.95), no EOS or bar target, so every run makes exactly its number of tokens; the fastest of
`--repeats` runs counts. Target: rolling at 4x the context >= 90 % of the within-context tokens/s.

(b) Quality: held-out bits/token on test pieces at least `--multiple` x the context long, teacher-forced over their
first multiple x context tokens ([BOS] + piece): the RoPE model token by token through the rolling cache, the RoPE
model with refill, and the learned-position model with refill (its only way). Bits are reported over every target
and over the targets past the context (where the three differ).

    python benchmarks/rolling_cache.py --rope-model /work/ab/rope/models/final \\
        --learned-model /work/ab/learned/models/final --prepared data/prepared --tokens data/tokens
    python benchmarks/rolling_cache.py --smoke    # tiny random models and a synthetic store in a temporary folder

Writes a Markdown table to stdout and benchmarks/out/rolling_cache.md (`--out` elsewhere).
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py (a sibling script) would shadow the stdlib `tokenize` that torch imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import math
import os
import tempfile
import time

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "rolling_cache.md"
sys.path.insert(0, str(REPO))


def smoke_inputs(root: Path) -> dict[str, Path]:
    """Tiny random RoPE and learned models (context 64) and a synthetic store whose test pieces are 5 contexts long."""
    import torch

    from mozart.data.tokenize import load_tokenizer
    from mozart.model.gpt import GPTConfig, MozartGPT, save_model
    from benchmarks.synthetic_store import COMPOSERS, write_synthetic_store

    write_synthetic_store(root, n_pieces=12, piece_tokens=5 * 64, n_val=2, n_test=6)
    tokens, prepared = root / "data/tokens", root / "data/prepared"
    tok = load_tokenizer(tokens / "tokenizer.json")
    models = {}
    for positions in ("rope", "learned"):
        torch.manual_seed(0)
        config = GPTConfig(n_layer=2, d_model=64, n_head=2, d_ff=256, context=64, dropout=0.0, positions=positions,
                           vocab_size=len(tok), n_composers=len(COMPOSERS), pad_id=tok.pad_token_id,
                           bos_id=tok["BOS_None"], eos_id=tok["EOS_None"])
        models[positions] = save_model(MozartGPT(config).eval(), root / positions, tokens / "tokenizer.json",
                                       prepared / "composers.json")
    return {"rope_model": models["rope"], "learned_model": models["learned"], "prepared": prepared, "tokens": tokens}


def tokens_per_s(model, grammar, batch: int, new_tokens: int, rolling: bool, repeats: int) -> float:
    """The fastest of `repeats` decoding runs of `new_tokens` per row after a BOS prompt."""
    import torch

    from mozart.generation.decoder import SamplingSettings, decode

    prompt = torch.full((batch, 1), model.config.bos_id)
    composer = torch.ones(batch, dtype=torch.long)
    settings = SamplingSettings(temperature=1.0, top_p=0.95)
    best = 0.0
    for _ in range(repeats):
        gen = decode(model, prompt, composer, settings, max_new_tokens=new_tokens, grammar=grammar, rolling=rolling,
                     generator=torch.Generator().manual_seed(0))
        best = max(best, gen.n_steps * batch / gen.seconds)
    return best


def speed_rows(rope, learned, grammar, args) -> list[tuple[str, int, float]]:
    """(run, new tokens per row, tokens/s) for every speed configuration."""
    context = rope.config.context
    long = args.multiple * context
    tokens_per_s(rope, grammar, args.batch, 16, True, 1)  # warm-up
    return [("RoPE, within the context (plain KV cache)", context - 1,
             tokens_per_s(rope, grammar, args.batch, context - 1, True, args.repeats)),
            ("RoPE, rolling KV cache", long, tokens_per_s(rope, grammar, args.batch, long, True, args.repeats)),
            ("RoPE, refill", long, tokens_per_s(rope, grammar, args.batch, long, False, args.repeats)),
            ("learned positions, refill", long, tokens_per_s(learned, grammar, args.batch, long, False, args.repeats))]


def rolling_log_probs(model, seq, composer, sinks: int):
    """(B, N-1) log-probabilities of seq[:, 1:] fed token by token through a rolling KV cache (one chunk first, as
    generation prefills)."""
    import torch

    from mozart.generation.rolling import RollingKVCache

    cache = RollingKVCache.for_model(model, seq.size(0), sinks)
    first = min(seq.size(1) - 1, cache.layout.slots)
    logits = [model(seq[:, :first], composer, cache=cache)[0]]
    logits += [model(seq[:, i:i + 1], composer, cache=cache)[0] for i in range(first, seq.size(1) - 1)]
    return _target_log_probs(torch.cat(logits, 1), seq)


def refill_log_probs(model, seq, composer):
    """(B, N-1) log-probabilities of seq[:, 1:] with the decoder's refill: a KV cache of the context, and when it is
    full, the oldest half dropped and the rest re-prefilled (mozart.generation.decoder._Bookkeeper.slide_if_full)."""
    import torch

    from mozart.generation.decoder import KVCache

    context, n_inputs = model.config.context, seq.size(1) - 1
    keep = max(1, context // 2)
    cache = KVCache.for_model(model, seq.size(0), context)
    first = min(n_inputs, context)
    logits, start = [model(seq[:, :first], composer, cache=cache)[0]], 0
    for n in range(first, n_inputs):
        if n + 1 - start > context:
            start = n + 1 - keep
            cache.reset()
            logits.append(model(seq[:, start:n + 1], composer, cache=cache)[0][:, -1:])
        else:
            logits.append(model(seq[:, n:n + 1], composer, cache=cache)[0])
    return _target_log_probs(torch.cat(logits, 1), seq)


def _target_log_probs(logits, seq):
    import torch

    return torch.log_softmax(logits.float(), -1).gather(2, seq[:, 1:, None]).squeeze(2)


def long_test_pieces(prepared: Path, n_tokens: int, n_pieces: int, bos_id: int, seed: int):
    """Up to `n_pieces` test-split pieces with at least n_tokens - 1 tokens: [(BOS + first tokens, composer id)]."""
    import numpy as np
    import pandas as pd

    from mozart.data.store import TokenStoreReader

    meta = pd.read_parquet(prepared / "metadata.parquet")
    test = meta[(meta["split"] == "test") & (meta["transpose"] == 0)]
    store = TokenStoreReader(prepared).store("test")
    rows = [r for r in test.itertuples() if store.offsets[r.store_row + 1] - store.offsets[r.store_row] >= n_tokens - 1]
    chosen = sorted(np.random.default_rng(seed).permutation(len(rows))[:n_pieces])
    return [([bos_id] + store.piece(rows[i].store_row)[:n_tokens - 1].tolist(), int(rows[i].composer_id))
            for i in chosen]


def quality_rows(rope, learned, args) -> tuple[list[tuple[str, float, float]], int]:
    """[(run, bits/token over every target, bits/token past the context)] and the number of pieces scored."""
    import torch

    context = rope.config.context
    pieces = long_test_pieces(args.prepared, args.multiple * context + 1, args.pieces, rope.config.bos_id, args.seed)
    if not pieces:
        raise SystemExit(f"no test piece of {args.multiple * context} tokens or more in {args.prepared}")
    runs = {"RoPE, rolling KV cache": lambda s, c: rolling_log_probs(rope, s, c, args.attention_sinks),
            "RoPE, refill": lambda s, c: refill_log_probs(rope, s, c),
            "learned positions, refill": lambda s, c: refill_log_probs(learned, s, c)}
    rows = []
    for name, score in runs.items():
        log_probs = []
        for i in range(0, len(pieces), args.batch):
            batch = pieces[i:i + args.batch]
            seq = torch.tensor([tokens for tokens, _ in batch])
            log_probs.append(score(seq, torch.tensor([c for _, c in batch])))
        nats = -torch.cat(log_probs)
        rows.append((name, float(nats.mean()) / math.log(2), float(nats[:, context:].mean()) / math.log(2)))
        print(rows[-1], file=sys.stderr)
    return rows, len(pieces)


def report(rope, speeds, quality, n_pieces: int, args) -> str:
    context = rope.config.context
    within = speeds[0][2]
    lines = ["# Rolling KV cache", "",
             f"RoPE model {args.rope_model} and learned-position model {args.learned_model} ({rope.config.n_layer} "
             f"layers, d_model {rope.config.d_model}, context {context}); batch {args.batch}, "
             f"{torch_threads()} thread(s), attention sinks {args.attention_sinks}; {os.cpu_count()} CPUs, load "
             f"average {os.getloadavg()[0]:.2f}.", "",
             "| run | new tokens/row | tokens/s | x within the context |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {n} | {speed:.1f} | {speed / within:.2f} |" for name, n, speed in speeds]
    lines += ["", f"Target: rolling at {args.multiple}x the context >= 0.90x within the context: "
              f"{'met' if speeds[1][2] >= 0.9 * within else 'not met'} ({speeds[1][2] / within:.2f}x).", "",
              f"Held-out bits/token, teacher-forced, {n_pieces} test pieces of >= {args.multiple * context} tokens "
              f"(their first {args.multiple * context} targets):", "",
              "| run | bits/token, all targets | bits/token past the context |", "|---|---:|---:|"]
    lines += [f"| {name} | {every:.4f} | {past:.4f} |" for name, every, past in quality]
    return "\n".join(lines) + "\n"


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rope-model", type=Path, help="trained model directory with model.positions = rope")
    p.add_argument("--learned-model", type=Path, help="trained model directory with learned positions")
    p.add_argument("--prepared", type=Path, help="the prepared data folder (metadata.parquet + token store)")
    p.add_argument("--tokens", type=Path, help="the tokens folder (tokenizer.json, for the grammar mask)")
    p.add_argument("--smoke", action="store_true", help="tiny random models and a synthetic store (a quick check)")
    p.add_argument("--multiple", type=int, default=4, help="generate and score this many contexts (default 4)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--pieces", type=int, default=16, help="test pieces to score (default 16)")
    p.add_argument("--attention-sinks", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="speed runs per configuration; the fastest counts")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="mozart-rolling-") as tmp:
        if args.smoke:
            vars(args).update(smoke_inputs(Path(tmp)))
            args.repeats = min(args.repeats, 1)
        elif None in (args.rope_model, args.learned_model, args.prepared, args.tokens):
            p.error("give --rope-model, --learned-model, --prepared and --tokens (or --smoke)")
        text = run(args)
    print(text)
    from mozart.infra.atomic import write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, text)


def run(args) -> str:
    import torch

    from mozart.data.tokenize import load_tokenizer
    from mozart.generation.grammar import grammar_for_tokenizer
    from mozart.model.gpt import load_model

    torch.set_num_threads(args.threads)
    rope, learned = load_model(args.rope_model), load_model(args.learned_model)
    if (rope.config.positions, learned.config.positions) != ("rope", "learned"):
        raise SystemExit(f"--rope-model has {rope.config.positions} positions, --learned-model "
                         f"{learned.config.positions}: expected rope and learned")
    grammar = grammar_for_tokenizer(load_tokenizer(args.tokens / "tokenizer.json"), rope.config.vocab_size)
    with torch.inference_mode():
        t0 = time.perf_counter()
        speeds = speed_rows(rope, learned, grammar, args)
        quality, n_pieces = quality_rows(rope, learned, args)
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return report(rope, speeds, quality, n_pieces, args)


if __name__ == "__main__":
    main()
