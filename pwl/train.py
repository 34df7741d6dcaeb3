"""One training loop for teachers, scratch students and PWL distillation: epochs, cosine LR per step,
validation-based selection, and an atomic per-epoch checkpoint that makes an interrupted run resume.
The same loop runs on the CPU, on one GPU (AMP, channels_last) and data-parallel under torchrun (DDP)."""
import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .compute import CPU, Compute
from .data import Normalizer, Split, augment
from .errors import PWLError


def set_threads(n: int) -> int:
    """n torch threads; 0 = every core, shared among the processes torchrun starts on this machine."""
    n = n or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    torch.set_num_threads(n)
    return n


def make_optimizer(param_groups: list[dict], cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: int, warmup: int, min_factor: float) -> float:
    """Linear warm-up, then cosine from 1 down to min_factor at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup - 1)  # the last optimiser step (total - 1) uses min_factor
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def accuracy(forward: Callable, split: Split, norm: Normalizer, batch_size: int, compute: Compute = CPU) -> float:
    correct = 0
    for i in range(0, len(split.y), batch_size):
        logits = forward(norm(compute.batch(split.x[i:i + batch_size])))
        correct += (logits.argmax(1) == split.y[i:i + batch_size].to(logits.device)).sum().item()
    return correct / max(1, len(split.y))


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


class Batches:
    """Shuffled, augmented, normalised mini-batches from an in-memory uint8 split (last partial batch dropped).
    Under DDP every rank walks the same permutation and takes its own 1/world of each global batch, so the
    number of optimiser steps and the samples of each step do not depend on the number of processes."""

    def __init__(self, split: Split, batch_size: int, norm: Normalizer, aug_cfg, compute: Compute = CPU):
        self.split, self.norm, self.aug, self.compute = split, norm, aug_cfg, compute
        self.batch_size = min(batch_size, len(split.y))
        if self.batch_size % compute.world_size:
            raise PWLError(f"batch size {self.batch_size} does not split evenly over {compute.world_size} processes",
                           "choose a batch_size divisible by torchrun's --nproc_per_node (the batch size is global)")
        self.steps = len(split.y) // self.batch_size

    def __len__(self):
        return self.steps

    def __iter__(self):
        return self.epoch(int(torch.randint(0, 2 ** 62, ())))

    def epoch(self, seed: int):
        """The batches of one epoch; the permutation depends only on `seed`, never on the rank."""
        perm = torch.randperm(len(self.split.y), generator=torch.Generator().manual_seed(seed))
        perm = perm.to(self.split.y.device)
        c = self.compute
        for i in range(self.steps):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size][c.rank::c.world_size]
            x, y = self.split.x[idx], self.split.y[idx]
            if x.device != c.device:  # host data: pinned staging, asynchronous copy
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(c.device, non_blocking=True), y.to(c.device, non_blocking=True)
            x = x.float().div_(255)
            yield c.batch(self.norm(augment(x, self.aug) if self.aug else x)), y


class Objective(nn.Module):
    """`loss_fn` as a module that owns the trained parameters: what DDP wraps, so that its gradient
    all-reduce sees every forward (PWL's losses call the student and converters several times per step)."""

    def __init__(self, trainable: nn.Module, loss_fn: Callable):
        super().__init__()
        self.trainable, self.loss_fn = trainable, loss_fn

    def forward(self, x, y, progress: float):
        return self.loss_fn(x, y, progress)


def train_step(objective: Callable, optimizer: torch.optim.Optimizer, sched, x, y, progress: float,
               compute: Compute = CPU, scaler=None):
    with compute.autocast():
        loss, terms, logits = objective(x, y, progress)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:  # float16 autocast: scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    sched.step()
    return loss.detach(), terms, logits.detach()


def fit(*, trainable: nn.Module, param_groups: list[dict], loss_fn: Callable, score_fn: Callable,
        train: Split, norm: Normalizer, optim_cfg, aug_cfg, ckpt_path: Path, fingerprint: str, seed: int,
        on_epoch: Callable = lambda rec: None, desc: str = "train", py_rng: random.Random | None = None,
        compute: Compute = CPU, find_unused_parameters: bool = False) -> FitResult:
    """Train `trainable` for optim_cfg.epochs. `loss_fn(x, y, progress) -> (loss, terms, logits)`;
    `score_fn() -> dict` with a 'score' key (validation, higher is better) picks the best epoch.
    Under DDP only rank 0 scores, checkpoints and calls `on_epoch`; the other ranks train in lockstep and end
    with the last weights. `find_unused_parameters`: some trained parameters may sit out a step (PWL's
    sampled mixed states), which DDP must be told."""
    py_rng = py_rng or random.Random(seed)
    batches = Batches(train, optim_cfg.batch_size, norm, aug_cfg, compute)
    total = optim_cfg.epochs * len(batches)
    warmup = round(optim_cfg.warmup_epochs * len(batches))
    min_factor = min(optim_cfg.lr * optim_cfg.min_lr_ratio, optim_cfg.min_lr) / optim_cfg.lr
    optimizer = make_optimizer(param_groups, optim_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, min_factor))
    scaler = torch.amp.GradScaler(compute.device.type) if compute.needs_grad_scaler else None
    best = FitResult(best_state=copy.deepcopy(trainable.state_dict()), best_epoch=0, best_score=-math.inf)
    start = 0
    if ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location=compute.device, weights_only=False)
        except Exception as e:
            raise PWLError(f"resume checkpoint {ckpt_path} is unreadable ({e})",
                           f"delete {ckpt_path} to train from scratch") from None
        if ck.get("fingerprint") == fingerprint:
            trainable.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            if scaler is not None and ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            best = FitResult(ck["best_state"], ck["best_epoch"], ck["best_score"], ck["history"])
            start = best.resumed_from = ck["epoch"]
            if compute.is_main:
                print(f"[{desc}] resuming after epoch {start} from {ckpt_path}", flush=True)
        elif compute.is_main:
            print(f"[{desc}] ignoring stale checkpoint {ckpt_path} (params or data changed)", flush=True)
    objective = Objective(trainable, loss_fn)
    if compute.distributed:  # broadcasts rank 0's weights, then averages gradients every step
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=find_unused_parameters,
                                            device_ids=[compute.device] if compute.device.type == "cuda" else None)
    for rec in best.history:
        on_epoch(rec)
    for epoch in range(start + 1, optim_cfg.epochs + 1):
        rank_seed = epoch_seed(seed, epoch, compute.rank)
        torch.manual_seed(rank_seed)  # augmentation, dropout
        py_rng.seed(rank_seed)  # PWL's sampled mixed states
        trainable.train()
        t0, sums, correct, seen = time.perf_counter(), {}, 0, 0
        bar = tqdm(batches.epoch(epoch_seed(seed, epoch)), total=len(batches), mininterval=30, leave=False,
                   desc=f"[{desc}] epoch {epoch}/{optim_cfg.epochs}", disable=not compute.is_main)
        for i, (x, y) in enumerate(bar):
            progress = ((epoch - 1) * len(batches) + i) / total
            loss, terms, logits = train_step(objective, optimizer, sched, x, y, progress, compute, scaler)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.float()
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        if not compute.is_main:
            continue
        trainable.eval()
        val = score_fn()
        rec = {"epoch": epoch, **{f"train/{k}": v.item() / len(batches) for k, v in sums.items()},
               "train/acc": float(correct) / max(1, seen), **{f"val/{k}": v for k, v in val.items()},
               "lr": optimizer.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t0}
        best.history.append(rec)
        if val["score"] > best.best_score:
            best.best_state, best.best_epoch, best.best_score = copy.deepcopy(trainable.state_dict()), epoch, val["score"]
        atomic_save({"fingerprint": fingerprint, "epoch": epoch, "model": trainable.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None,
                     "best_state": best.best_state, "best_epoch": best.best_epoch, "best_score": best.best_score,
                     "history": best.history}, ckpt_path)
        on_epoch(rec)
        print(f"[{desc}] epoch {epoch}: loss {rec['train/loss']:.4f} train acc {rec['train/acc']:.4f} "
              f"val score {val['score']:.4f} ({rec['epoch_s']:.0f}s)", flush=True)
    if compute.distributed:
        dist.barrier()  # every rank leaves together, after rank 0 has written its last checkpoint
    if compute.is_main:
        trainable.load_state_dict(best.best_state)
    trainable.eval()
    return best
