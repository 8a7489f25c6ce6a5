"""Generation speed: our sampler vs the seed's naive loop and Hugging Face `generate` (/work/shared/baselines).

Seed architecture (8 layers, d512, 8 heads, context 8192, vocab of the pipeline's REMI tokenizer), random weights,
a 128-token prompt. Ours runs with everything on (grammar mask, repetition penalty, top-p), batch 1 and 8, with and
without classifier-free guidance, in fp32/bf16/int8. The baseline's naive loop is too slow for 2,048 tokens here, so
the like-for-like comparison is at `--short` new tokens (baseline and ours), plus ours at `--long`.

Every configuration runs in its own subprocess, so its peak RSS is its own. Threads are pinned to `--threads` for
ours and the baseline alike. Writes a Markdown table to stdout and benchmarks/out/generate.md.

    python benchmarks/generate.py                 # full run (~10 min on a busy 2-core CPU)
    python benchmarks/generate.py --short 64 --long 256 --precisions int8   # quick look
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py (a sibling script) would shadow the stdlib `tokenize` that torch imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import re
import resource
import subprocess
import time

REPO = Path(__file__).resolve().parent.parent
BASELINE = Path("/work/shared/baselines/gen_baseline.py")
OUT = REPO / "benchmarks" / "out" / "generate.md"
PROMPT_TOKENS = 128


def run_one(precision: str, batch: int, cfg_scale: float, new_tokens: int, threads: int) -> dict:
    """One configuration, in this (fresh) process: tokens/s and peak RSS."""
    import torch

    sys.path.insert(0, str(REPO))
    from mozart.config import TokenizeConfig
    from mozart.grammar import RemiGrammar
    from mozart.model import GPTConfig, MozartGPT
    from mozart.sampling import KVCache, SamplingSettings, for_inference, generate
    from mozart.tokenize import build_tokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = build_tokenizer(TokenizeConfig())
    config = GPTConfig(n_layer=8, d_model=512, n_head=8, d_ff=2048, context=8192, dropout=0.0,
                       vocab_size=len(tok), n_composers=8, bos_id=tok["BOS_None"], eos_id=tok["EOS_None"])
    model = for_inference(MozartGPT(config).eval(), precision)
    grammar = RemiGrammar.from_tokenizer(tok, config.vocab_size)
    prompt = torch.randint(3, config.vocab_size, (1, PROMPT_TOKENS)).expand(batch, -1)
    settings = SamplingSettings(temperature=0.9, top_k=40, top_p=0.95, repetition_penalty=1.1, cfg_scale=cfg_scale)
    composer_id = torch.ones(batch, dtype=torch.long)
    generate(model, prompt, composer_id, settings, max_new_tokens=8, grammar=grammar)  # warm-up
    t0 = time.perf_counter()
    gen = generate(model, prompt, composer_id, settings, max_new_tokens=new_tokens, grammar=grammar,
                   generator=torch.Generator().manual_seed(0))  # no EOS/bar target: exactly new_tokens per row
    seconds = time.perf_counter() - t0
    streams = batch * (2 if settings.guided else 1)
    cache = KVCache.for_model(model, streams, PROMPT_TOKENS + new_tokens)
    return {"precision": precision, "batch": batch, "cfg": cfg_scale, "new_tokens": new_tokens,
            "generated": sum(gen.n_new), "seconds": seconds, "steps_per_s": gen.n_steps / seconds,
            "tokens_per_s": sum(gen.n_new) / seconds, "kv_cache_mb": cache.nbytes() / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def subprocess_run(args: list[str], threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def ours(precision: str, batch: int, cfg: float, new_tokens: int, threads: int) -> dict:
    out = subprocess_run([__file__, "--one", json.dumps([precision, batch, cfg, new_tokens])], threads)
    return json.loads(out.strip().splitlines()[-1])


def baseline(new_tokens: int, threads: int) -> dict:
    t0 = time.perf_counter()
    out = subprocess_run([str(BASELINE), str(new_tokens)], threads)
    m = re.search(r"naive_tok_s=([\d.]+) hf_kvcache_tok_s=([\d.]+)", out)
    if not m:
        raise SystemExit(f"unexpected baseline output: {out}")
    return {"naive": float(m.group(1)), "hf": float(m.group(2)), "wall": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=256, help="new tokens for the like-for-like run with the baseline")
    p.add_argument("--long", type=int, default=2048, help="new tokens for our long run")
    p.add_argument("--threads", type=int, default=1, help="torch threads for ours and the baseline")
    p.add_argument("--precisions", default="fp32,bf16,int8")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_one(*json.loads(args.one), threads=args.threads)))
        return
    precisions = args.precisions.split(",")
    load = os.getloadavg()
    base = baseline(args.short, args.threads)
    print(f"baseline ({args.short} new tokens): naive {base['naive']:.1f} tok/s, HF generate {base['hf']:.1f} tok/s",
          file=sys.stderr)
    rows = []
    for precision in precisions:
        for batch, cfg in ((1, 1.0), (1, 1.5)):
            rows.append(ours(precision, batch, cfg, args.short, args.threads))
            print(rows[-1], file=sys.stderr)
    best = max(precisions, key=lambda pr: next(r["tokens_per_s"] for r in rows if r["precision"] == pr))
    for precision in dict.fromkeys([best, "fp32"]):
        for batch, cfg in ((1, 1.0), (1, 1.5), (8, 1.0), (8, 1.5)):
            if precision != best and batch == 8:
                continue
            rows.append(ours(precision, batch, cfg, args.long, args.threads))
            print(rows[-1], file=sys.stderr)

    lines = [f"# Generation benchmark", "",
             f"Seed architecture (8 layers, d512, 8 heads, context 8192), random weights, {PROMPT_TOKENS}-token prompt, "
             f"{args.threads} torch thread(s) for every run; ours with grammar mask, repetition penalty 1.1, "
             f"top-k 40, top-p 0.95. Load average before the run: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
             f"({os.cpu_count()} CPUs).", "",
             f"Baseline at {args.short} new tokens: naive full recompute {base['naive']:.1f} tok/s, "
             f"HF `generate` with KV cache {base['hf']:.1f} tok/s.", "",
             "| precision | batch | cfg | new tokens/row | tokens/s | x HF generate | x naive | CFG cost (time ratio) "
             "| KV cache MB | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unguided = next((u for u in rows if u["precision"] == r["precision"] and u["batch"] == r["batch"]
                         and u["new_tokens"] == r["new_tokens"] and u["cfg"] == 1.0), None)
        cost = f"{unguided['tokens_per_s'] / r['tokens_per_s']:.2f}" if r["cfg"] != 1.0 and unguided else "-"
        lines.append(f"| {r['precision']} | {r['batch']} | {r['cfg']:g} | {r['new_tokens']} | "
                     f"{r['tokens_per_s']:.1f} | {r['tokens_per_s'] / base['hf']:.2f} | "
                     f"{r['tokens_per_s'] / base['naive']:.1f} | {cost} | {r['kv_cache_mb']:.0f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    load = os.getloadavg()
    lines += ["", f"Load average after the run: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}. The machine is shared: "
              "figures are noisy; ratios within one run are the meaningful part.",
              "Targets: batch 1 >= 3x HF generate; CFG cost <= 1.3x the unguided time."]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from mozart.atomic import write_text

    write_text(OUT, text)


if __name__ == "__main__":
    main()
