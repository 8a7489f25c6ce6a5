"""Generation speed: our sampler vs the seed's naive loop and Hugging Face `generate` (../shared/baselines).

Seed architecture (8 layers, d512, 8 heads, context 8192, vocab of the pipeline's REMI tokenizer), random weights,
a 128-token prompt. Ours runs with everything on (grammar mask, repetition penalty, top-p), batch 1 and 8, with and
without classifier-free guidance, in fp32/bf16/int8/int4 (mozart.model.quantize). Every ratio compares runs of the same
length: the whole peer script (naive loop and HF `generate`) at `--short` new tokens, and HF `generate` alone at
`--long` (2,048, the issue's setting), run from the peer's own file with its naive loop skipped, because that loop
would take most of an hour at 2,048 tokens. HF `generate` slows down with length more than ours does (its cache grows
by concatenation), so the two lengths give different ratios; both are reported.

Every configuration runs in its own subprocess, so its peak RSS is its own. Threads are pinned to each of `--threads`
for ours and the peer alike. Writes Markdown tables to stdout and benchmarks/out/generate.md.

    python benchmarks/generate.py                 # full run (~15 min on a 2-core CPU)
    python benchmarks/generate.py --short 64 --long 256 --threads 1 --precisions int8,int4 --repeats 1  # quick look
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py (a sibling script) would shadow the stdlib `tokenize` that torch imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import math
import os
import re
import resource
import subprocess
import time

REPO = Path(__file__).resolve().parent.parent
REPO_ROOT = Path(__file__).resolve().parent.parent
BASELINES = REPO_ROOT.parent / "shared" / "baselines"  # ../shared beside the checkout; --baselines to point elsewhere
BASELINE = BASELINES / "gen_baseline.py"
OUT = REPO / "benchmarks" / "out" / "generate.md"
PROMPT_TOKENS = 128


def run_one(precision: str, batch: int, cfg_scale: float, new_tokens: int, repeats: int, threads: int) -> dict:
    """One configuration, in this (fresh) process: the fastest of `repeats` runs (tokens/s) and peak RSS."""
    import torch

    sys.path.insert(0, str(REPO))
    from mozart.config import TokenizeConfig
    from mozart.generation.grammar import RemiGrammar
    from mozart.model.gpt import GPTConfig, MozartGPT
    from mozart.model.quantize import for_inference
    from mozart.generation.decoder import SamplingSettings, decode
    from mozart.data.tokenize import build_tokenizer

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
    decode(model, prompt, composer_id, settings, max_new_tokens=8, grammar=grammar)  # warm-up
    seconds, gen = math.inf, None
    for _ in range(repeats):  # the fastest run: interference from other work on a shared machine only slows runs
        t0 = time.perf_counter()
        run = decode(model, prompt, composer_id, settings, max_new_tokens=new_tokens, grammar=grammar,
                       generator=torch.Generator().manual_seed(0))  # no EOS/bar target: exactly new_tokens per row
        if time.perf_counter() - t0 < seconds:
            seconds, gen = time.perf_counter() - t0, run
    return {"precision": precision, "batch": batch, "cfg": cfg_scale, "new_tokens": new_tokens, "threads": threads,
            "generated": sum(gen.n_new), "seconds": seconds, "steps_per_s": gen.n_steps / seconds,
            "tokens_per_s": gen.n_steps * batch / seconds,  # sampled (a trailing unfinished note is trimmed after)
            "kv_cache_mb": gen.extra["kv_cache_bytes"] / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def subprocess_run(args: list[str], threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def ours(precision: str, batch: int, cfg: float, new_tokens: int, repeats: int, threads: int) -> dict:
    out = subprocess_run([__file__, "--threads", str(threads), "--one",
                          json.dumps([precision, batch, cfg, new_tokens, repeats])], threads)
    return json.loads(out.strip().splitlines()[-1])


NAIVE_LOOP = "    for _ in range(n_new):\n        logits = m(x).logits[:, -1]\n"


def baseline(new_tokens: int, threads: int, hf_only: bool = False) -> dict:
    """Run the peer script. With hf_only, its naive loop is skipped (its `range(n_new)` becomes `range(0)` in a
    temporary copy; everything else is the peer's own code): at 2,048 tokens that loop alone takes most of an hour."""
    script = BASELINE
    if hf_only:
        source = BASELINE.read_text()
        if NAIVE_LOOP not in source:
            raise SystemExit(f"{BASELINE} changed: its naive loop is not where benchmarks/generate.py expects it")
        script = OUT.parent / "gen_baseline_hf_only.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(source.replace(NAIVE_LOOP, NAIVE_LOOP.replace("range(n_new)", "range(0)")))
    out = subprocess_run([str(script), str(new_tokens)], threads)
    m = re.search(r"naive_tok_s=([\d.]+) hf_kvcache_tok_s=([\d.]+)", out)
    if not m:
        raise SystemExit(f"unexpected baseline output: {out}")
    return {"naive": math.nan if hf_only else float(m.group(1)), "hf": float(m.group(2))}


def hf_generate(new_tokens: int, threads: int, repeats: int) -> float:
    """HF `generate` tokens/s: the fastest of `repeats` runs of the peer script with its naive loop skipped."""
    return max(baseline(new_tokens, threads, hf_only=True)["hf"] for _ in range(repeats))


def measure(threads: int, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Peer and ours at one thread count: {new_tokens: {"naive", "hf"}} and our rows."""
    peer = baseline(args.short, threads)
    base = {args.short: {"naive": peer["naive"], "hf": max(peer["hf"], hf_generate(args.short, threads, 2))},
            args.long: {"naive": math.nan, "hf": hf_generate(args.long, threads, 2)}}
    print(f"threads {threads}: peer {base}", file=sys.stderr)
    precisions, rows = args.precisions.split(","), []
    for precision in precisions:
        for cfg in (1.0, 1.5):
            rows.append(ours(precision, 1, cfg, args.short, args.repeats, threads))
            print(rows[-1], file=sys.stderr)
    best = max(precisions, key=lambda pr: next(r["tokens_per_s"] for r in rows if r["precision"] == pr))
    long_runs = [(best, 1, args.repeats), (best, 8, 1)] + [("fp32", 1, 1)] * (best != "fp32" and "fp32" in precisions)
    for precision, batch, repeats in long_runs:
        for cfg in (1.0, 1.5):
            rows.append(ours(precision, batch, cfg, args.long, repeats, threads))
            print(rows[-1], file=sys.stderr)
    base[args.long]["hf"] = max(base[args.long]["hf"], hf_generate(args.long, threads, 1))  # again, after ours
    return base, rows


def table(threads: int, base: dict, rows: list[dict], args: argparse.Namespace) -> list[str]:
    lines = [f"### {threads} thread{'s' if threads > 1 else ''}", "",
             f"Peer at {args.short} new tokens: naive full recompute {base[args.short]['naive']:.1f} tok/s, HF "
             f"`generate` {base[args.short]['hf']:.1f} tok/s; HF `generate` at {args.long} new tokens "
             f"{base[args.long]['hf']:.1f} tok/s.", "",
             "| precision | batch | cfg | new tokens/row | tokens/s | x HF generate (same length) | x naive "
             "| CFG cost (time ratio) | KV cache MB | peak RSS MB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        unguided = next((u for u in rows if u["precision"] == r["precision"] and u["batch"] == r["batch"]
                         and u["new_tokens"] == r["new_tokens"] and u["cfg"] == 1.0), None)
        cost = f"{unguided['tokens_per_s'] / r['tokens_per_s']:.2f}" if r["cfg"] != 1.0 and unguided else "-"
        peer = base[r["new_tokens"]]
        naive = f"{r['tokens_per_s'] / peer['naive']:.1f}" if not math.isnan(peer["naive"]) else "-"
        lines.append(f"| {r['precision']} | {r['batch']} | {r['cfg']:g} | {r['new_tokens']} | "
                     f"{r['tokens_per_s']:.1f} | {r['tokens_per_s'] / peer['hf']:.2f} | {naive} | {cost} | "
                     f"{r['kv_cache_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=256, help="new tokens for the run with the whole peer script")
    p.add_argument("--long", type=int, default=2048, help="new tokens for the long run (the issue's setting)")
    p.add_argument("--threads", default="1,2", help="torch thread counts to measure, ours and the peer alike")
    p.add_argument("--precisions", default="fp32,bf16,int8,int4")
    p.add_argument("--repeats", type=int, default=3, help="runs per batch-1 configuration; the fastest counts")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--baselines", type=Path, default=BASELINES,
                        help="folder with the peer scripts (default: ../shared/baselines beside the repository)")
    args = p.parse_args()
    global BASELINE
    BASELINE = args.baselines / "gen_baseline.py"
    if args.one:
        print(json.dumps(run_one(*json.loads(args.one), threads=int(args.threads))))
        return
    load_before = os.getloadavg()
    results = {t: measure(t, args) for t in map(int, args.threads.split(","))}
    load_after = os.getloadavg()
    lines = ["# Generation benchmark", "",
             f"Seed architecture (8 layers, d512, 8 heads, context 8192), random weights, {PROMPT_TOKENS}-token prompt; "
             f"ours with grammar mask, repetition penalty 1.1, top-k 40, top-p 0.95; batch-1 figures are the fastest "
             f"of {args.repeats} runs (the peer's HF `generate` likewise), longer runs one. {os.cpu_count()} CPUs; "
             f"load average {load_before[0]:.2f} before the run, {load_after[0]:.2f} after. HF `generate` at "
             f"{args.long} tokens is the peer's code with its naive loop skipped.", ""]
    for threads, (base, rows) in results.items():
        lines += table(threads, base, rows, args)
    lines += ["The machine is shared: figures are noisy; ratios within one run are the meaningful part.",
              "Targets: batch 1 >= 3x HF generate; CFG cost <= 1.3x the unguided time."]
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from mozart.infra.atomic import write_text

    write_text(OUT, text)


if __name__ == "__main__":
    main()
