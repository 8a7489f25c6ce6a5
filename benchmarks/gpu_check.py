"""The GPU check (run it through benchmarks/gpu_check.sh): CUDA tests, recipe training speed and memory, generation.

1. the CUDA-marked tests (`pytest -m cuda`; they skip without a GPU);
2. the `params.yaml` model + train recipe for a fixed number of steps on a synthetic token store
   (benchmarks/synthetic_store.py), with gradient checkpointing off/on and torch.compile off/on: non-PAD tokens/s
   (the first steps, and the compile, excluded), MFU against the GPU's dense bf16 peak, peak allocated memory, beside
   the memory estimate `train.grad_checkpointing: auto` decides by;
3. generation tokens/s (the KV-cache sampler, bf16 weights on a GPU) at batch 1 and 8, without and with CFG.

One markdown table goes to stdout and to --out. `--dry-run` runs everything on CPU at tiny sizes (the test suite runs
it); there the figures only show that each part runs. No network, nothing installed.
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/tokenize.py (a sibling script) would shadow the stdlib `tokenize` that torch imports: drop this folder
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.synthetic_store import write_synthetic_store  # noqa: E402

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets; the first match wins
BF16_PEAK_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0),
                    ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("B200", 2250.0)]
OUT = REPO / "benchmarks" / "out" / "gpu_check.md"


@dataclasses.dataclass(frozen=True)
class Sizes:
    steps: int            # measured optimizer steps per training variant
    warmup_steps: int     # steps before the clock starts (allocator warm-up, autotuning, compilation)
    n_pieces: int
    piece_tokens: int
    new_tokens: int       # generated per row
    prompt_tokens: int


GPU_SIZES = Sizes(steps=12, warmup_steps=4, n_pieces=256, piece_tokens=16_384, new_tokens=512, prompt_tokens=128)
DRY_SIZES = Sizes(steps=2, warmup_steps=1, n_pieces=24, piece_tokens=200, new_tokens=8, prompt_tokens=16)
DRY_MODEL = {"n_layer": 2, "d_model": 64, "n_head": 2, "d_ff": 128, "context": 128}
DRY_TRAIN = {"seq_len": 64, "batch_size": 2, "grad_accum": 2, "device": "cpu", "threads": 1}


def recipe(dry_run: bool):
    """(ModelConfig, TrainConfig) of params.yaml, validated as the stages do; tiny CPU sizes for a dry run."""
    from mozart.config import build

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    model, train = dict(params["model"]), dict(params["train"])
    if dry_run:
        model.update(DRY_MODEL)
        train.update(DRY_TRAIN)
    return build("model", model), build("train", train)


def cuda_tests() -> str:
    """Run every test file that uses the cuda marker, `-m cuda`; returns pytest's summary line."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text())
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *files],
                          cwd=REPO, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)]
    summary = lines[-1].strip("= ") if lines else f"pytest exited {done.returncode}"
    if done.returncode not in (0, 5):  # 5: nothing collected
        print(done.stdout[-4000:], done.stderr[-2000:], file=sys.stderr)
        summary += " (FAILED)"
    return summary


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in BF16_PEAK_TFLOPS if key in name), None)


def flops_per_token(trainer) -> float:
    """Training FLOPs per token: 6 x matmul parameters (the tied head included, position/composer tables not) plus
    causal attention, 6 x n_layer x d_model x seq_len (half of the usual 12: the mask skips half the scores)."""
    g, model = trainer.gpt_config, trainer.model
    matmul_params = model.num_params() - sum(p.numel() for n, p in model.named_parameters() if n.startswith(("wpe", "wce")))
    return 6 * matmul_params + 6 * g.n_layer * g.d_model * trainer.cfg.seq_len


def train_variant(root: Path, sizes: Sizes, dry_run: bool, checkpointing: bool, compile_model: bool) -> dict:
    """Train the recipe (eval and checkpoint only at the end, outside the clock); tokens/s, peak memory, MFU."""
    from mozart.training.gpu_settings import estimate_training_bytes
    from mozart.training.trainer import Trainer, TrainPaths

    model_cfg, train_cfg = recipe(dry_run)
    max_steps = sizes.warmup_steps + sizes.steps + 1  # the last step also evaluates and checkpoints: not timed
    train_cfg = dataclasses.replace(train_cfg, max_steps=max_steps, eval_every=max_steps, ckpt_every=max_steps,
                                    eval_batches=2, grad_checkpointing=checkpointing, compile=compile_model,
                                    resume="never", max_minutes=0.0)
    if torch.cuda.is_available() and not dry_run:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model_cfg, train_cfg, 0, TrainPaths.under(root))
    stamps: dict[int, float] = {}
    trainer.fit(on_step=lambda step: stamps.setdefault(step, time.perf_counter()))
    seconds = stamps[max_steps - 1] - stamps[sizes.warmup_steps]
    cfg, g = trainer.cfg, trainer.gpt_config
    tokens = (max_steps - 1 - sizes.warmup_steps) * cfg.batch_size * cfg.seq_len * cfg.grad_accum  # no PAD here
    estimate = estimate_training_bytes(g.n_layer, g.d_model, g.d_ff, g.vocab_size, trainer.model.num_params(),
                                       cfg.batch_size, cfg.seq_len, cfg.amp, checkpointing)
    on_gpu = trainer.device.type == "cuda"
    result = {"tokens_per_s": tokens / seconds, "flops_per_token": flops_per_token(trainer),
              "peak_bytes": torch.cuda.max_memory_allocated(trainer.device) if on_gpu else None,
              "estimate_bytes": estimate, "amp": trainer.amp_dtype, "device": trainer.device,
              "gpt_config": g, "params": trainer.model.num_params()}
    del trainer
    gc.collect()
    torch._dynamo.reset()
    return result


def generation_speed(gpt_config, device: torch.device, sizes: Sizes, batch: int, cfg_scale: float) -> dict:
    """Tokens/s of the KV-cache sampler with the pipeline's sampling settings (grammar, penalty, top-p)."""
    from mozart.data.tokenize import build_tokenizer
    from mozart.config import TokenizeConfig
    from mozart.generation.decoder import SamplingSettings, decode
    from mozart.generation.grammar import RemiGrammar
    from mozart.model.gpt import MozartGPT
    from mozart.model.quantize import for_inference

    torch.manual_seed(0)
    model = MozartGPT(dataclasses.replace(gpt_config, dropout=0.0)).to(device).eval()
    if device.type == "cuda":
        model = for_inference(model, "bf16")
    grammar = RemiGrammar.from_tokenizer(build_tokenizer(TokenizeConfig()), gpt_config.vocab_size)
    prompt = torch.randint(3, gpt_config.vocab_size, (1, sizes.prompt_tokens)).expand(batch, -1).to(device)
    composer_id = torch.ones(batch, dtype=torch.long, device=device)
    settings = SamplingSettings(temperature=0.9, top_p=0.95, repetition_penalty=1.1, cfg_scale=cfg_scale)
    decode(model, prompt, composer_id, settings, max_new_tokens=8, grammar=grammar)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    gen = decode(model, prompt, composer_id, settings, max_new_tokens=sizes.new_tokens, grammar=grammar,
                   generator=torch.Generator(device=device).manual_seed(0))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"tokens_per_s": gen.n_steps * batch / seconds,
            "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}


def gib(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def table(test_summary: str, runs: list[tuple[str, dict]], gens: list[tuple[str, dict]], peak: float | None) -> str:
    rows = ["| part | setting | tokens/s | MFU (bf16 peak) | peak memory | notes |", "|---|---|---|---|---|---|",
            f"| CUDA tests | `pytest -m cuda` | - | - | - | {test_summary} |"]
    for setting, r in runs:
        mfu = f"{100 * r['tokens_per_s'] * r['flops_per_token'] / (peak * 1e12):.1f} %" if peak else "-"
        rows.append(f"| train | {setting} | {r['tokens_per_s']:,.0f} | {mfu} | {gib(r['peak_bytes'])} | "
                    f"estimate {gib(r['estimate_bytes'])} |")
    for setting, r in gens:
        rows.append(f"| generate | {setting} | {r['tokens_per_s']:,.1f} | - | {gib(r['peak_bytes'])} | |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check that every part runs")
    parser.add_argument("--out", type=Path, default=OUT, help=f"markdown file to write (default {OUT})")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the built-in list")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device: run on a machine with a GPU, or pass --dry-run", file=sys.stderr)
        return 2
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    if args.dry_run:  # inductor's C++ build takes minutes on a small CPU: trace with dynamo, run eagerly
        torch.compile = functools.partial(torch.compile, backend="eager")
    started = time.perf_counter()
    test_summary = cuda_tests()
    print(f"cuda tests: {test_summary}", file=sys.stderr)
    runs: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory(prefix="mozart-gpu-check-") as tmp:
        root = write_synthetic_store(Path(tmp), sizes.n_pieces, sizes.piece_tokens)
        for compile_model in (False, True):
            for checkpointing in (False, True):
                setting = (f"grad checkpointing {'on' if checkpointing else 'off'}, "
                           f"compile {'on' if compile_model else 'off'}")
                print(f"train: {setting}", file=sys.stderr)
                runs.append((setting, train_variant(root, sizes, args.dry_run, checkpointing, compile_model)))
    first = runs[0][1]
    gens = []
    for batch in (1, 8):
        for cfg_scale in (1.0, 1.5):
            setting = f"batch {batch}, {'CFG 1.5' if cfg_scale != 1.0 else 'no CFG'}"
            print(f"generate: {setting}", file=sys.stderr)
            gens.append((setting, generation_speed(first["gpt_config"], first["device"], sizes, batch, cfg_scale)))
    device = first["device"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run)"
    peak = peak_tflops(device, args.peak_tflops)
    model_cfg, train_cfg = recipe(args.dry_run)
    header = (f"GPU check: {name}, torch {torch.__version__}, autocast {str(first['amp']).removeprefix('torch.')}, "
              f"bf16 peak {f'{peak:g} TFLOP/s' if peak else 'unknown'}; model {model_cfg.n_layer} x "
              f"{model_cfg.d_model} ({first['params'] / 1e6:.1f} M params), seq {train_cfg.seq_len}, batch "
              f"{train_cfg.batch_size} x {train_cfg.grad_accum}; {sizes.steps} timed steps after "
              f"{sizes.warmup_steps}; generation {sizes.new_tokens} new tokens after a {sizes.prompt_tokens}-token "
              f"prompt; total {time.perf_counter() - started:.0f} s")
    text = header + "\n\n" + table(test_summary, runs, gens, peak) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 1 if "FAILED" in test_summary else 0


if __name__ == "__main__":
    sys.exit(main())
