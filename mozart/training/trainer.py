"""The train stage: fit MozartGPT on random crops, on CPU, one GPU, or many (DDP under torchrun).

One optimizer step = grad_accum micro-batches of batch_size crops on each rank. AdamW (no decay on biases, LayerNorm
and embeddings), linear warmup + cosine decay, gradient clipping, autocast and gradient checkpointing as chosen by
mozart.training.gpu_settings. Every random choice of a step (crops, CFG drops, dropout) is seeded from
(seed, step, rank), so a run resumed from a checkpoint is bitwise identical to an uninterrupted one on CPU.

The device is synchronised once per optimizer step (loss and gradient norm read together); a non-finite one stops
training with a TrainingError before anything is written. `tokens_seen`/`tokens_per_s` count non-PAD targets;
`padded_tokens_per_s` counts every position.

Outputs (rank 0): models/final/ (see mozart.model.gpt.save_model), metrics/train.json, metrics/train_curve.tsv,
resumable checkpoints in models/checkpoints/<run>/ (mozart.training.checkpoints).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import sys
import time
from typing import Any, Callable

import torch
from tqdm import tqdm

from mozart.config import ModelConfig, TrainConfig, TrainStageConfig, check_across
from mozart.data.crops import TrainData
from mozart.errors import TrainingError
from mozart.infra.atomic import write_json, write_text
from mozart.paths import TrainPaths  # noqa: F401  (re-exported: tests and benchmarks use it from here)
from mozart.model.gpt import GPTConfig, MozartGPT, save_model, unwrap
from mozart.training import distributed, finetune
from mozart.training.batches import StepBatches
from mozart.training.checkpoints import CheckpointStore, describe_run, resume_key
from mozart.training.gpu_settings import (choose_amp_dtype, estimate_training_bytes, native_bf16,
                                          resolve_grad_checkpointing)

LOG_EVERY = 10  # steps between per-step MLflow metrics (each call is a database write)


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


class Trainer:
    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, seed: int, paths: TrainPaths, run: Any = None,
                 data: TrainData | None = None):
        self.cfg, self.seed, self.paths, self.run = cfg, seed, paths, run
        check_across({"model": model_cfg, "train": cfg})  # before any data is read (ranges: at construction)
        if cfg.threads > 0:  # on a shared CPU, 2 OpenMP threads that wait on each other can be 10x slower than 1
            torch.set_num_threads(cfg.threads)
        self.dist = distributed.setup(cfg.device)
        self.device = self.dist.device
        self.base = self.open_base(model_cfg)  # train.init_from: checked before the data is read
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
        if self.base is not None:
            finetune.check_vocabulary(vocab, self.base, paths.tokens_dir / "tokenizer.json")
            self.say(finetune.start_from_base(self.model, self.base, self.data.composers))
        self.model.gradient_checkpointing = self.choose_grad_checkpointing()
        self.model.label_smoothing = cfg.label_smoothing
        self.optimizer = make_optimizer(self.model, cfg, self.device)
        from transformers import get_cosine_schedule_with_warmup

        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, int(cfg.warmup_frac * cfg.max_steps),
                                                         cfg.max_steps)
        self.amp_dtype, use_scaler = choose_amp_dtype(self.device.type, cfg.amp, native_bf16(self.device))
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.forward_model: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.key = resume_key(self.gpt_config, cfg, seed, self.dist.world_size, self.data.fingerprint,
                              base=self.base.fingerprint if self.base else "")
        self.checkpoints = CheckpointStore(paths.checkpoint_dir, self.key)
        self.step, self.tokens_seen, self.train_seconds = 0, 0, 0.0
        self.unsynced_tokens = 0  # non-PAD targets of this rank since the last sync_tokens()
        # device-side loss sums in float64, like the Python float sums they replace (MPS has no float64)
        self.sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.curve: list[list[float]] = []  # rows of step, train_loss, val_loss, lr
        self.window = [0.0, 0]  # train loss sum and steps since the last curve row
        self.resumed_from = 0
        self.val_batches = self.data.val_batches(seed, cfg.eval_batches, cfg.batch_size, cfg.seq_len)
        self.batches = StepBatches(self.train_batch, cfg.grad_accum, vocab.pad_id, background=cfg.num_workers > 0,
                                   pin=self.device.type == "cuda")

    def train_batch(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        return self.data.train_batch(self.seed, step, self.dist.rank, micro, cfg.batch_size, cfg.seq_len,
                                     cfg.p_uncond)

    def open_base(self, model_cfg: ModelConfig) -> finetune.BaseModel | None:
        """The checked base model of train.init_from, or None (from scratch)."""
        base_dir = finetune.resolve_base_dir(self.cfg.init_from, self.paths.repo_dir)
        if base_dir is None:
            return None
        if base_dir.resolve() != self.paths.base_dir.resolve():  # dvc.yaml tracks only this folder
            self.say(f"note: {base_dir} is not {self.paths.base_dir}, the folder dvc.yaml tracks: `dvc repro` "
                     "will not rerun train when that base model changes")
        return finetune.open_base(base_dir, model_cfg, self.paths.tokens_dir / "tokenizer.json")

    def choose_grad_checkpointing(self) -> bool:
        cfg, g = self.cfg, self.gpt_config

        def estimate(checkpointing: bool) -> int:
            return estimate_training_bytes(g.n_layer, g.d_model, g.d_ff, g.vocab_size, self.model.num_params(),
                                           cfg.batch_size, cfg.seq_len, cfg.amp, checkpointing)

        on = resolve_grad_checkpointing(cfg.grad_checkpointing, self.device, estimate)
        if on and cfg.grad_checkpointing == "auto":
            self.say(f"gradient checkpointing on: ~{estimate(False) / 2**30:.1f} GiB per micro-batch without it "
                     f"would not fit on {self.device}")
        return on

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
        """Rank 0 picks the newest clean checkpoint of this run (or none) and every rank loads what it picked."""
        state = None
        if self.dist.is_main:
            for stale in self.checkpoints.remove_stale_temp_files():
                self.say(f"removed {stale.name}, left by a checkpoint write that was killed")
            if self.cfg.resume == "auto":
                state = self.checkpoints.load_newest(self.say)
                if state is None:
                    self.say_why_fresh()
        state = distributed.broadcast_object(state, self.dist)
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
        self.say(f"resuming from checkpoint at step {self.step} ({self.checkpoints.directory})")

    def say_why_fresh(self) -> None:
        root = self.checkpoints.root
        others = [d for d in root.glob("*/") if d != self.checkpoints.directory and any(d.glob("ckpt-*.pt"))]
        if others or any(root.glob("ckpt-*.pt")):
            self.say(f"no checkpoint of this run in {self.checkpoints.directory}: the {len(others)} other run "
                     f"folder(s) in {root} hold other model/train params, seed, GPU count, data or base model and are left "
                     "untouched (delete them to free disk); starting fresh")

    def checkpoint(self) -> None:
        self.check_finite_weights()
        self.sync_tokens()
        if self.dist.is_main:
            description = describe_run(dataclasses.asdict(self.gpt_config), dataclasses.asdict(self.cfg), self.seed,
                                       self.dist.world_size)
            self.checkpoints.save(self.step, self.state(), description)
        distributed.barrier(self.dist)

    def sync_tokens(self) -> None:
        """Add every rank's non-PAD tokens since the last call to tokens_seen (a collective: call on all ranks)."""
        (total,) = distributed.all_reduce_sum([float(self.unsynced_tokens)], self.dist)
        self.tokens_seen += int(total)
        self.unsynced_tokens = 0

    # --- steps -----------------------------------------------------------------------------------------------------
    def train_step(self) -> float:
        """One optimizer step; returns the mean micro-batch loss, averaged over ranks. Reads the device once."""
        cfg = self.cfg
        torch.manual_seed(step_seed(self.seed, self.step, self.dist.rank))  # dropout: a function of (step, rank)
        self.forward_model.train()
        total = torch.zeros((), dtype=self.sum_dtype, device=self.device)
        batches = self.batches.for_step(self.step)
        for micro, batch in enumerate(batches):
            x, y, cid = (t.to(self.device, non_blocking=True) for t in (batch.inputs, batch.targets,
                                                                          batch.composer_ids))
            last = micro == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.forward_model.no_sync()
            with sync:
                with self.autocast():
                    _, loss = self.forward_model(x, cid, y)
                loss = loss / cfg.grad_accum
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            total += loss.detach()
        self.unsynced_tokens += sum(b.n_real for b in batches)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        # clip_grad_norm_ with an infinite limit scales by exactly 1: it only measures the norm for the check below
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if self.scaler:
            self.scaler.step(self.optimizer)  # skips the step when the fp16 gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        # mean over ranks (queued, no extra sync): every rank sees the same loss, so all stop at the same step
        stats = distributed.all_reduce_mean_(torch.stack([total, norm.to(total.dtype)]), self.dist)
        loss_value, norm_value = stats.tolist()
        self.check_finite(loss_value, norm_value)
        return loss_value

    def check_finite(self, loss: float, grad_norm: float) -> None:
        """Stop on a non-finite loss or gradient norm (both averaged over ranks: every rank decides alike).

        With fp16 + GradScaler an overflowing gradient is normal (the step is skipped, the scale halved); only a
        scale already below 1 means the overflow is not a scaling problem. Nothing is written on the way out: the
        last checkpoint, models/final and metrics/train.json stay as they were."""
        if math.isfinite(loss) and (math.isfinite(grad_norm) or (self.scaler and self.scaler.get_scale() >= 1.0)):
            return
        raise self.diverged(self.step + 1, f"loss {loss}, gradient norm {grad_norm}")

    def check_finite_weights(self) -> None:
        """Before anything is saved: the update of a step whose loss was still finite can overflow the weights."""
        if not torch.stack([p.isfinite().all() for p in self.model.parameters()]).all().item():
            raise self.diverged(self.step, "the weights are no longer finite")

    def diverged(self, step: int, what: str) -> TrainingError:
        if self.scaler:
            cause = "an fp16 AMP overflow the loss scaler could not absorb (set train.amp: false, or lower train.lr)"
        elif self.amp_dtype is not None:
            cause = (f"train.lr ({self.cfg.lr:g}) too high, or a bf16 AMP overflow (lower train.lr; train.amp: false "
                     "rules AMP out)")
        else:
            cause = f"train.lr ({self.cfg.lr:g}) too high (lower it, or raise train.warmup_frac)"
        return TrainingError(f"training diverged at step {step}: {what}; likely cause: {cause}; models/final and "
                             "metrics/train.json were left as they were")

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean NLL per token (no label smoothing) over the fixed val crops, shared out over ranks."""
        model = self.model
        model.eval()
        smoothing, model.label_smoothing = model.label_smoothing, 0.0
        loss_sum = torch.zeros((), dtype=self.sum_dtype, device=self.device)
        n_tokens = 0
        for i, (x, y, cid) in enumerate(self.val_batches):
            if i % self.dist.world_size != self.dist.rank:
                continue
            n = int((y != self.gpt_config.pad_id).sum())  # counted on the host: no device sync
            x, y, cid = x.to(self.device), y.to(self.device), cid.to(self.device)
            with self.autocast():
                _, loss = model(x, cid, y)
            loss_sum += loss.to(self.sum_dtype) * n
            n_tokens += n
        model.label_smoothing = smoothing
        loss_sum, n_tokens = distributed.all_reduce_sum([loss_sum.item(), float(n_tokens)], self.dist)
        val_loss = loss_sum / max(n_tokens, 1.0)
        if not math.isfinite(val_loss):
            raise self.diverged(self.step, f"validation loss {val_loss}")
        return val_loss

    # --- the loop --------------------------------------------------------------------------------------------------
    def fit(self, stop_at_step: int | None = None,
            on_step: Callable[[int], None] | None = None) -> dict[str, Any] | None:
        """Train to max_steps (or until max_minutes, after a checkpoint). `stop_at_step` ends the process's work
        right after that step's checkpoint, as if killed there (tests); then nothing final is written."""
        bar = tqdm(total=self.cfg.max_steps, disable=not self.dist.is_main, desc="train", unit="step",
                   dynamic_ncols=True)
        try:
            return self._fit(bar, stop_at_step, on_step)
        finally:
            bar.close()  # also when training stops with an error: no half-drawn bar after the message
            self.batches.close()

    def _fit(self, bar: tqdm, stop_at_step: int | None,
             on_step: Callable[[int], None] | None) -> dict[str, Any] | None:
        cfg = self.cfg
        self.maybe_resume()
        bar.initial = bar.n = self.step  # a resumed run's bar starts where it left off
        bar.refresh()
        started, stopped_early = time.time(), False
        while self.step < cfg.max_steps:
            t = time.time()
            loss = self.train_step()
            self.train_seconds += time.time() - t
            self.step += 1
            self.window = [self.window[0] + loss, self.window[1] + 1]
            lr = self.scheduler.get_last_lr()[0]
            log_now = self.step % LOG_EVERY == 0
            if not self.dist.enabled or log_now:  # one collective per LOG_EVERY steps under DDP
                self.sync_tokens()
            tokens_per_s = self.tokens_seen / max(self.train_seconds, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            bar.update(1)
            if self.run is not None and self.dist.is_main and log_now:
                self.run.log_metrics({"train_loss": loss, "lr": lr, "tokens_per_s": tokens_per_s}, step=self.step)
            done = self.step == cfg.max_steps
            if self.step % cfg.eval_every == 0 or done:
                train_loss = self.window[0] / self.window[1]  # already averaged over ranks, step by step
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
                return None
            if time_up and not done:
                self.say(f"train.max_minutes ({cfg.max_minutes}) reached at step {self.step}: stopping early; "
                         "rerun with train.resume: auto to continue")
                stopped_early = True
                break
        bar.close()
        self.sync_tokens()
        if not self.curve or self.curve[-1][0] != self.step:  # stopped early between evaluations
            train_loss = self.window[0] / self.window[1] if self.window[1] else self.curve[-1][1]
            self.curve.append([self.step, train_loss, self.evaluate(), self.scheduler.get_last_lr()[0]])
        return self.finish(stopped_early)

    def finish(self, stopped_early: bool) -> dict[str, Any]:
        step, train_loss, val_loss, _lr = self.curve[-1]
        cfg = self.cfg
        padded_tokens = step * cfg.batch_size * cfg.seq_len * cfg.grad_accum * self.dist.world_size
        seconds = max(self.train_seconds, 1e-9)
        metrics = {
            "train_loss": train_loss, "val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)),
            "val_bits_per_token": val_loss / math.log(2), "steps": int(step), "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_seen / seconds, "padded_tokens_per_s": padded_tokens / seconds,
            "params": unwrap(self.model).num_params(),
            "train_minutes": self.train_seconds / 60, "stopped_early": stopped_early, "resumed_from": self.resumed_from,
            "world_size": self.dist.world_size, "device": self.device.type,
            "amp_dtype": str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32",
            "grad_checkpointing": self.model.gradient_checkpointing, "vocab_size": self.gpt_config.vocab_size,
        }
        self.check_finite_weights()
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
