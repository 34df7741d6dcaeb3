"""One training loop for teachers, scratch students and PWL distillation: epochs, LR per step,
validation-based selection, and an atomic per-epoch checkpoint that makes an interrupted run resume.
The same loop runs on the CPU, on one GPU (AMP, channels_last) and data-parallel under torchrun (DDP)."""
import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .atomic import atomic_write
from .compute import CPU, Compute
from .data import Batches, Normalizer, Split
from .env import machine, resume_mismatch
from .errors import PWLError
from .finite import FiniteGuard


def make_optimizer(param_groups: list[dict], cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def without_decay_on_norm_bias(param_groups: list[dict], module: nn.Module) -> list[dict]:
    """Each group split in two, the second with weight decay 0: biases and the weights of normalisation layers
    (the HF Trainer's rule, which the authors' ViT fine-tune ran with). Empty groups are dropped."""
    norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
    spared = {id(p) for m in module.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    spared |= {id(p) for name, p in module.named_parameters() if name.rsplit(".", 1)[-1] == "bias"}
    groups = []
    for g in param_groups:
        params, rest = list(g["params"]), {k: v for k, v in g.items() if k != "params"}
        groups += [{**rest, "params": [p for p in params if id(p) not in spared]},
                   {**rest, "params": [p for p in params if id(p) in spared], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, total: int, warmup: int, min_factor: float, schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine (or linear) from 1 down to min_factor at the last step. The HF Trainer's
    linear schedule reaches 0 one step later: the last step's LR, 1/(total - warmup) of the peak, differs."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup - 1))  # the last optimiser step (total - 1): min_factor
    if schedule == "linear":
        return min_factor + (1 - min_factor) * (1 - t)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))


def lr_schedule(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
    """Per-step LR factor: warm-up over `warmup_epochs`, then `cfg.schedule` down to
    min(lr * min_lr_ratio, min_lr)."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    min_factor = min(cfg.lr * cfg.min_lr_ratio, cfg.min_lr) / cfg.lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, min_factor, cfg.schedule))


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """Each epoch (and each rank) draws from its own seed: a resumed run replays exactly, ranks augment apart."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2 ** 63


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float
    history: list = field(default_factory=list)
    resumed_from: int = 0

    def add_epoch(self, rec: dict, score: float, module: nn.Module) -> None:
        """Record an epoch; keep a copy of its weights if its validation score beats every earlier epoch's."""
        self.history.append(rec)
        if score > self.best_score:
            self.best_state, self.best_epoch, self.best_score = copy.deepcopy(module.state_dict()), rec["epoch"], score


@dataclass
class Trainee:
    """What a run trains and how it is judged."""
    module: nn.Module  # the trained parameters: checkpointed, and set to the best epoch's at the end
    param_groups: list[dict]
    # (x, y, progress) -> (loss, {name: term}, logits): CrossEntropyObjective, pwl.losses.OBJECTIVES, or any
    # such function. One with `find_unused_parameters` true leaves some parameters out of a step (PWL's sampled
    # mixed states), which DDP must be told
    objective: Callable
    score_fn: Callable  # () -> {"score": validation score, higher is better, ...anything else to log}
    py_rng: random.Random | None = None  # reseeded every epoch: PWL's sampled mixed states

    @property
    def find_unused_parameters(self) -> bool:
        return bool(getattr(self.objective, "find_unused_parameters", False))


@dataclass
class CrossEntropyObjective:
    """Stage `train`: cross-entropy of the model's logits (teachers and scratch students)."""
    model: nn.Module
    name = "cross_entropy"

    def __call__(self, x, y, progress: float):
        logits = self.model(x)
        return F.cross_entropy(logits, y), {}, logits


@dataclass
class TrainingRun:
    """The data, the recipe, and what makes the run reproducible and resumable."""
    train: Split
    norm: Normalizer
    optim: Any  # pwl.config.OptimConfig
    augment: Any  # pwl.config.AugmentConfig, or None
    checkpoint: Path  # resume checkpoint, rewritten after every epoch
    fingerprint: str  # a checkpoint is resumed only when it was written for the same params and data
    seed: int
    compute: Compute = field(default_factory=lambda: CPU)
    desc: str = "train"  # log prefix, e.g. 'vgg/teacher'
    on_epoch: Callable = lambda rec: None  # every epoch record, on rank 0 (DVCLive)
    resize_to: int | None = None  # training images resized to this before augmentation (augment.at_input_size)


class ObjectiveModule(nn.Module):
    """The objective as a module that owns the trained parameters: what DDP wraps, so that its gradient
    all-reduce sees every forward (PWL's losses call the student and converters several times per step)."""

    def __init__(self, trainable: nn.Module, objective: Callable):
        super().__init__()
        self.trainable, self.objective = trainable, objective

    def forward(self, x, y, progress: float):
        return self.objective(x, y, progress)


def train_step(objective: Callable, optimizer: torch.optim.Optimizer, sched, x, y, progress: float,
               compute: Compute = CPU, scaler=None, clip: float = 0.0):
    """One optimiser step; `clip` > 0 caps the total gradient norm of all trained parameters first."""
    with compute.autocast():
        loss, terms, logits = objective(x, y, progress)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # float16 autocast: scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        if clip:
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            clip_gradients(optimizer, clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if clip:
            clip_gradients(optimizer, clip)
        optimizer.step()
    sched.step()
    return loss.detach(), terms, logits.detach()


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_norm)


def save_resume_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_resume_checkpoint(run: TrainingRun) -> dict | None:
    """The checkpoint to resume from, or None: there is none, or it was written for other params or data, or
    on another machine setup (mixing would change the floats)."""
    path, main = run.checkpoint, run.compute.is_main
    if not path.exists():
        return None
    try:
        ck = torch.load(path, map_location=run.compute.device, weights_only=False)
    except Exception as e:
        raise PWLError(f"resume checkpoint {path} is unreadable ({e})",
                       f"delete {path} to train from scratch") from None
    if ck.get("fingerprint") != run.fingerprint:
        if main:
            print(f"[{run.desc}] ignoring stale checkpoint {path} (params or data changed)", flush=True)
        return None
    mismatch = resume_mismatch(ck.get("machine"))
    if ck.get("precision") != run.compute.precision:
        mismatch = (f"it was trained in {ck.get('precision') or 'an unrecorded precision'}, this run trains in "
                    f"{run.compute.precision} (compute.amp / compute.channels_last)")
    if mismatch:
        if main:
            print(f"[{run.desc}] not resuming from {path}: {mismatch}; training from scratch", flush=True)
        return None
    if main:
        print(f"[{run.desc}] resuming after epoch {ck['epoch']} from {path}", flush=True)
    return ck


def restore(ck: dict, module: nn.Module, optimizer, sched, scaler) -> FitResult:
    """Put a run back where its checkpoint left it; returns the selection state so far."""
    module.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    return FitResult(ck["best_state"], ck["best_epoch"], ck["best_score"], ck["history"], resumed_from=ck["epoch"])


def data_parallel(objective: nn.Module, compute: Compute, find_unused_parameters: bool) -> nn.Module:
    """DDP under torchrun (broadcasts rank 0's weights, then averages gradients every step); as is otherwise."""
    if not compute.distributed:
        return objective
    return nn.parallel.DistributedDataParallel(objective, find_unused_parameters=find_unused_parameters,
                                               device_ids=[compute.device] if compute.device.type == "cuda" else None)


def fit(trainee: Trainee, run: TrainingRun) -> FitResult:
    """Train for `run.optim.epochs`, select the epoch with the best `score_fn()`, and leave its weights in
    `trainee.module`. Under DDP only rank 0 scores, checkpoints and calls `on_epoch`; the other ranks train in
    lockstep and end with the last weights."""
    model, cfg, compute, desc = trainee.module, run.optim, run.compute, run.desc
    py_rng = trainee.py_rng or random.Random(run.seed)
    batches = Batches(run.train, cfg.batch_size, run.norm, run.augment, compute, run.resize_to)
    total = cfg.epochs * len(batches)
    groups = trainee.param_groups
    optimizer = make_optimizer(without_decay_on_norm_bias(groups, model) if cfg.no_decay_norm_bias else groups, cfg)
    sched = lr_schedule(optimizer, cfg, len(batches))
    scaler = torch.amp.GradScaler(compute.device.type) if compute.needs_grad_scaler else None
    guard = FiniteGuard(optimizer, desc, len(batches), compute.device, check_grads=scaler is None)
    best = FitResult(best_state=copy.deepcopy(model.state_dict()), best_epoch=0, best_score=-math.inf)
    ck = load_resume_checkpoint(run)
    if ck is not None:
        try:
            best = restore(ck, model, optimizer, sched, scaler)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as e:
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise PWLError(f"resume checkpoint {run.checkpoint} matches this run's params but not its model or "
                           f"optimizer ({type(e).__name__}: {reason})",
                           f"delete it (rm {run.checkpoint}) and rerun: training starts from scratch") from None
    objective = data_parallel(ObjectiveModule(model, trainee.objective), compute, trainee.find_unused_parameters)
    for rec in best.history:
        run.on_epoch(rec)
    for epoch in range(best.resumed_from + 1, cfg.epochs + 1):
        rank_seed = epoch_seed(run.seed, epoch, compute.rank)
        torch.manual_seed(rank_seed)  # augmentation, dropout
        py_rng.seed(rank_seed)  # PWL's sampled mixed states
        model.train()
        t0, sums, correct, seen = time.perf_counter(), {}, 0, 0
        bar = tqdm(batches.epoch(epoch_seed(run.seed, epoch)), total=len(batches), mininterval=30, leave=False,
                   desc=f"[{desc}] epoch {epoch}/{cfg.epochs}", disable=not compute.is_main)
        for i, (x, y) in enumerate(bar):
            progress = ((epoch - 1) * len(batches) + i) / total
            loss, terms, logits = train_step(objective, optimizer, sched, x, y, progress, compute, scaler,
                                           cfg.clip_grad_norm)
            guard.step(loss, epoch, i + 1)  # stops at the first non-finite loss or gradient
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.float()
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        guard.flush()  # before anything of this epoch is scored or saved
        if not compute.is_main:
            continue
        model.eval()
        val = trainee.score_fn()
        rec = {"epoch": epoch, **{f"train/{k}": v.item() / len(batches) for k, v in sums.items()},
               "train/acc": float(correct) / max(1, seen), **{f"val/{k}": v for k, v in val.items()},
               "lr": optimizer.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t0}
        best.add_epoch(rec, val["score"], model)
        save_resume_checkpoint(run.checkpoint, {
            "fingerprint": run.fingerprint, "epoch": epoch, "model": model.state_dict(),
            "machine": machine(),  # threads and CPU kernels: a resume elsewhere restarts instead
            "precision": compute.precision,  # a float32 run is never continued in bfloat16, nor the reverse
            "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "best_state": best.best_state,
            "best_epoch": best.best_epoch, "best_score": best.best_score, "history": best.history})
        run.on_epoch(rec)
        print(f"[{desc}] epoch {epoch}: loss {rec['train/loss']:.4f} train acc {rec['train/acc']:.4f} "
              f"val score {val['score']:.4f} ({rec['epoch_s']:.0f}s)", flush=True)
    if compute.distributed:
        dist.barrier()  # every rank leaves together, after rank 0 has written its last checkpoint
    if compute.is_main:
        model.load_state_dict(best.best_state)
    model.eval()
    return best
