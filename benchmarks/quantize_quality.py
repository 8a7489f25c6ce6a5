"""What reduced-precision inference costs in quality: held-out loss of a trained model in fp32, bf16, int8 and int4.

For each precision of `mozart.model.quantize.for_inference`, on the same test-split windows (data/prepared metadata,
data/tokens shards): bits per token, the share of positions whose most likely next token equals fp32's, and the
mean KL divergence from fp32's next-token distribution. Writes a Markdown table to stdout and
benchmarks/out/quantize_quality.md.

    python benchmarks/quantize_quality.py --model models/final --data data
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py (a sibling script) would shadow the stdlib `tokenize` that torch imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import math

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "quantize_quality.md"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/final", help="trained model directory (default models/final)")
    p.add_argument("--data", default="data", help="folder with prepared/ and tokens/ (default data)")
    p.add_argument("--windows", type=int, default=64, help="test windows to score (default 64)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import pandas as pd
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from mozart.infra.atomic import write_text
    from mozart.evaluation.stage import ShardReader, context_windows
    from mozart.model.gpt import load_model
    from mozart.model.quantize import PRECISIONS, for_inference

    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    config = model.config
    meta = pd.read_parquet(Path(args.data) / "prepared" / "metadata.parquet")
    test = meta[(meta["split"] == "test") & (meta["transpose"] == 0)]
    windows = context_windows(test, ShardReader(Path(args.data) / "tokens"), config, args.windows, args.seed)
    if not windows:
        raise SystemExit(f"no test-split windows under {args.data}: run the pipeline up to prepare first")

    results, reference = [], []
    with torch.inference_mode():
        for precision in PRECISIONS:
            fast = for_inference(model, precision)
            nats = kl = agree = n = 0.0
            for i, (chunk, composer_id) in enumerate(windows):
                seq = torch.tensor(chunk)[None]
                logp = F.log_softmax(fast(seq[:, :-1], torch.tensor([composer_id]))[0][0].float(), dim=-1)
                if precision == "fp32":
                    reference.append(logp)
                ref = reference[i]
                nats += float(-logp.gather(1, seq[0, 1:, None]).sum())
                kl += float((ref.exp() * (ref - logp)).sum())
                agree += float((logp.argmax(-1) == ref.argmax(-1)).sum())
                n += seq.size(1) - 1
            results.append({"precision": precision, "bits": nats / n / math.log(2), "agree": agree / n,
                            "kl": kl / n, "tokens": int(n)})
            print(results[-1], file=sys.stderr)

    fp32_bits = results[0]["bits"]
    lines = ["# Quality of reduced-precision inference", "",
             f"Model {args.model} ({config.n_layer} layers, d_model {config.d_model}, context {config.context}); "
             f"{len(windows)} test-split windows, {results[0]['tokens']:,} predicted tokens.", "",
             "| precision | test bits/token | vs fp32 | top-1 agrees with fp32 | KL from fp32 (nats/token) |",
             "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['precision']} | {r['bits']:.4f} | {100 * (r['bits'] / fp32_bits - 1):+.2f} % | "
                     f"{100 * r['agree']:.1f} % | {r['kl']:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_text(OUT, text)


if __name__ == "__main__":
    main()
