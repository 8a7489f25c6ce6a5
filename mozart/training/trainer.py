"""The train stage: fit MozartGPT on random crops, on CPU, one GPU, or many (DDP under torchrun).

One optimizer step = grad_accum micro-batches of batch_size crops on each rank. AdamW (no decay on biases, LayerNorm
and embeddings), linear warmup + cosine decay, gradient clipping, autocast (bf16 on CPU and bf16-capable GPUs, fp16 +
GradScaler on older GPUs). Every random choice of a step (crops, CFG drops, dropout) is seeded from
(seed, step, rank), so a run resumed from a checkpoint is bitwise identical to an uninterrupted one on CPU.

Outputs (rank 0): models/final/ (see mozart.model.gpt.save_model), metrics/train.json, metrics/train_curve.tsv, resumable
checkpoints in models/checkpoints/ (`ckpt-<step>.pt`, the newest two kept; loaded with weights_only=True).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from mozart.training import distributed
from mozart.infra.atomic import atomic_path, write_json, write_text
from mozart.config import ModelConfig, TrainConfig, TrainStageConfig, check_across
from mozart.data.crops import TrainData
from mozart.paths import TrainPaths  # noqa: F401  (re-exported: tests and benchmarks use it from here)
from mozart.model.gpt import GPTConfig, MozartGPT, save_model, unwrap

# train params that do not change the trained weights: a checkpoint written under other values is still resumable
NON_STATE_KEYS = ("eval_every", "eval_batches", "ckpt_every", "resume", "max_minutes", "device",
                  "compile", "threads")
KEEP_CHECKPOINTS = 2
LOG_EVERY = 10  # steps between per-step MLflow metrics (each call is a database write)


def choose_amp_dtype(device_type: str, enabled: bool, bf16_supported: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler): bf16 on CPU and bf16-capable CUDA, else fp16 + scaler on CUDA."""
    if not enabled or device_type not in ("cpu", "cuda"):
        return None, False   # MPS autocast is still patchy: train it in fp32
    if device_type == "cpu" or bf16_supported:
        return torch.bfloat16, False
    return torch.float16, True


def step_seed(seed: int, step: int, rank: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()[:8], "little") >> 1


def make_optimizer(model: MozartGPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matmul weights only (not biases, LayerNorm or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # tied lm_head appears once, as wte.weight
        (decay if p.dim() >= 2 and not name.startswith(("wte", "wpe", "wce")) else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu")  # one kernel for all parameters instead of a loop of small ops
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=fused)


def resume_key(model_cfg: GPTConfig, cfg: TrainConfig, seed: int, world_size: int, fingerprint: str) -> str:
    train = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NON_STATE_KEYS}
    blob = {"model": dataclasses.asdict(model_cfg), "train": train, "seed": seed, "world_size": world_size,
            "data": fingerprint}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    path = directory / f"ckpt-{step:07d}.pt"
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in sorted(directory.glob("ckpt-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(directory: Path, key: str, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The newest checkpoint written under the same config and data, else None (with a message saying why)."""
    paths = sorted(directory.glob("ckpt-*.pt"))
    if not paths:
        return None
    try:
        state = torch.load(paths[-1], map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable: never crash a run over it, start fresh
        say(f"checkpoint {paths[-1]} is unreadable ({type(exc).__name__}); starting fresh")
        return None
    if state.get("key") != key:
        say(f"checkpoint {paths[-1].name} was written with other model/train params or data; starting fresh")
        return None
    return state


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, seed: int, paths: TrainPaths, run: Any = None,
                 data: TrainData | None = None):
        self.cfg, self.seed, self.paths, self.run = cfg, seed, paths, run
        check_across({"model": model_cfg, "train": cfg})  # before any data is read (ranges: at construction)
        if cfg.threads > 0:  # on a shared CPU, 2 OpenMP threads that wait on each other can be 10x slower than 1
            torch.set_num_threads(cfg.threads)
        self.dist = distributed.setup(cfg.device)
        self.device = self.dist.device
        self.data = data or TrainData.load(paths.tokens_dir, paths.prepared_dir)
        vocab = self.data.vocab
        self.gpt_config = GPTConfig(**dataclasses.asdict(model_cfg), vocab_size=vocab.size,
                                    n_composers=self.data.n_composers, pad_id=vocab.pad_id, bos_id=vocab.bos_id,
                                    eos_id=vocab.eos_id)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (optimizer, loss) on tensor cores
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(seed)  # same initial weights on every rank
        self.model = MozartGPT(self.gpt_config).to(self.device)
        self.model.gradient_checkpointing = cfg.grad_checkpointing
        self.model.label_smoothing = cfg.label_smoothing
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, int(cfg.warmup_frac * cfg.max_steps),
                                                         cfg.max_steps)
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp_dtype, use_scaler = choose_amp_dtype(self.device.type, cfg.amp, bf16_ok)
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.forward_model: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.key = resume_key(self.gpt_config, cfg, seed, self.dist.world_size, self.data.fingerprint)
        self.step, self.tokens_seen, self.train_seconds = 0, 0, 0.0
        self.curve: list[list[float]] = []  # rows of step, train_loss, val_loss, lr
        self.window = [0.0, 0]  # train loss sum and steps since the last curve row
        self.resumed_from = 0
        self.val_batches = self.data.val_batches(seed, cfg.eval_batches, cfg.batch_size, cfg.seq_len)

    def say(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg, file=sys.stderr)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"key": self.key, "step": self.step, "tokens_seen": self.tokens_seen,
                "train_seconds": self.train_seconds, "curve": self.curve, "window": self.window,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}, "rng_torch": torch.get_rng_state()}

    def maybe_resume(self) -> None:
        if self.cfg.resume != "auto":
            return
        state = load_latest_checkpoint(self.paths.checkpoint_dir, self.key, self.say)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_torch"])
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        self.train_seconds, self.curve = float(state["train_seconds"]), [list(r) for r in state["curve"]]
        self.window = [float(state["window"][0]), int(state["window"][1])]
        self.resumed_from = self.step
        self.say(f"resuming from checkpoint at step {self.step}")

    def checkpoint(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.paths.checkpoint_dir, self.step, self.state())
        distributed.barrier(self.dist)

    # --- steps -----------------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One optimizer step; returns the mean micro-batch loss on this rank."""
        cfg = self.cfg
        torch.manual_seed(step_seed(self.seed, self.step, self.dist.rank))  # dropout: a function of (step, rank)
        self.forward_model.train()
        total = 0.0
        for micro in range(cfg.grad_accum):
            x, y, cid = self.data.train_batch(self.seed, self.step, self.dist.rank, micro, cfg.batch_size,
                                              cfg.seq_len, cfg.p_uncond)
            x, y, cid = x.to(self.device), y.to(self.device), cid.to(self.device)
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.forward_model.no_sync()
            with sync:
                with self.autocast():
                    _, loss = self.forward_model(x, cid, y)
                loss = loss / cfg.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.item()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean NLL per token (no label smoothing) over the fixed val crops, shared out over ranks."""
        model = self.model
        model.eval()
        smoothing, model.label_smoothing = model.label_smoothing, 0.0
        loss_sum, n_tokens = 0.0, 0.0
        for i, (x, y, cid) in enumerate(self.val_batches):
            if i % self.dist.world_size != self.dist.rank:
                continue
            x, y, cid = x.to(self.device), y.to(self.device), cid.to(self.device)
            with self.autocast():
                _, loss = model(x, cid, y)
            n = (y != self.gpt_config.pad_id).sum().item()
            loss_sum += loss.item() * n
            n_tokens += n
        model.label_smoothing = smoothing
        loss_sum, n_tokens = distributed.all_reduce_sum([loss_sum, n_tokens], self.dist)
        return loss_sum / max(n_tokens, 1.0)

    # --- the loop --------------------------------------------------------------------------------------------------
    def fit(self, stop_at_step: int | None = None,
            on_step: Callable[[int], None] | None = None) -> dict[str, Any] | None:
        """Train to max_steps (or until max_minutes, after a checkpoint). `stop_at_step` ends the process's work
        right after that step's checkpoint, as if killed there (tests); then nothing final is written."""
        cfg = self.cfg
        self.maybe_resume()
        tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum * self.dist.world_size
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not self.dist.is_main, desc="train",
                   unit="step", dynamic_ncols=True)
        started, stopped_early = time.time(), False
        while self.step < cfg.max_steps:
            t = time.time()
            loss = self.train_step()
            self.train_seconds += time.time() - t
            self.step += 1
            self.tokens_seen += tokens_per_step
            self.window = [self.window[0] + loss, self.window[1] + 1]
            lr = self.scheduler.get_last_lr()[0]
            tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            bar.update(1)
            if self.run is not None and self.dist.is_main and self.step % LOG_EVERY == 0:
                self.run.log_metrics({"train_loss": loss, "lr": lr, "tokens_per_s": tokens_per_s}, step=self.step)
            done = self.step == cfg.max_steps
            if self.step % cfg.eval_every == 0 or done:
                (train_loss,) = distributed.all_reduce_sum([self.window[0] / self.window[1]], self.dist)
                train_loss /= self.dist.world_size
                val_loss = self.evaluate()
                self.curve.append([self.step, train_loss, val_loss, lr])
                self.window = [0.0, 0]
                self.say(f"step {self.step}: train_loss {train_loss:.4f} val_loss {val_loss:.4f}")
                if self.run is not None and self.dist.is_main:
                    self.run.log_metrics({"val_loss": val_loss}, step=self.step)
            time_up = cfg.max_minutes > 0 and (time.time() - started) / 60 >= cfg.max_minutes
            time_up = distributed.broadcast_flag(time_up, self.dist)
            if self.step % cfg.ckpt_every == 0 or done or time_up or self.step == stop_at_step:
                self.checkpoint()
            if on_step is not None:
                on_step(self.step)
            if self.step == stop_at_step:
                bar.close()
                return None
            if time_up and not done:
                self.say(f"train.max_minutes ({cfg.max_minutes}) reached at step {self.step}: stopping early; "
                         "rerun with train.resume: auto to continue")
                stopped_early = True
                break
        bar.close()
        if not self.curve or self.curve[-1][0] != self.step:  # stopped early between evaluations
            train_loss = self.window[0] / self.window[1] if self.window[1] else float("nan")
            self.curve.append([self.step, train_loss, self.evaluate(), self.scheduler.get_last_lr()[0]])
        return self.finish(stopped_early)

    def finish(self, stopped_early: bool) -> dict[str, Any]:
        step, train_loss, val_loss, _lr = self.curve[-1]
        metrics = {
            "train_loss": train_loss, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)),
            "val_bits_per_token": val_loss / math.log(2), "steps": int(step), "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_seen / max(self.train_seconds, 1e-9), "params": unwrap(self.model).num_params(),
            "train_minutes": self.train_seconds / 60, "stopped_early": stopped_early, "resumed_from": self.resumed_from,
            "world_size": self.dist.world_size, "device": self.device.type,
            "amp_dtype": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32",
            "vocab_size": self.gpt_config.vocab_size,
        }
        if self.dist.is_main:
            save_model(self.model, self.paths.final_dir, self.paths.tokens_dir / "tokenizer.json",
                       self.paths.prepared_dir / "composers.json")
            write_json(self.paths.metrics_json, metrics)
            rows = ["step\ttrain_loss\tval_loss\tlr"] + [f"{int(s)}\t{tl:.6f}\t{vl:.6f}\t{lr:.6g}"
                                                        for s, tl, vl, lr in self.curve]
            write_text(self.paths.curve_tsv, "\n".join(rows) + "\n")
        distributed.barrier(self.dist)
        return metrics


def run(cfg: TrainStageConfig, seed: int, paths: TrainPaths, tracker: Any = None) -> dict[str, Any] | None:
    """The train stage (stage contract: mozart/paths.py): fit and publish models/final; returns metrics/train.json's
    content. `tracker` (the stage script's MLflow run: `log_metrics(dict, step=)`) receives the per-step curve."""
    return Trainer(cfg.model, cfg.train, seed, paths, tracker).fit()


def train(model_cfg: ModelConfig, cfg: TrainConfig, seed: int, paths: TrainPaths, run: Any = None,
          stop_at_step: int | None = None, on_step: Callable[[int], None] | None = None) -> dict[str, Any] | None:
    """Build a Trainer and fit; returns the final metrics (None when stopped by `stop_at_step`)."""
    return Trainer(model_cfg, cfg, seed, paths, run).fit(stop_at_step=stop_at_step, on_step=on_step)
