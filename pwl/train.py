"""One training loop for teachers, scratch students and PWL distillation: epochs, cosine LR per step,
validation-based selection, and an atomic per-epoch checkpoint that makes an interrupted run resume."""
import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from .data import Normalizer, Split, augment
from .errors import PWLError


def set_threads(n: int) -> int:
    n = n or os.cpu_count() or 1
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
def accuracy(forward: Callable, split: Split, norm: Normalizer, batch_size: int) -> float:
    correct = 0
    for i in range(0, len(split.y), batch_size):
        logits = forward(norm(split.x[i:i + batch_size]))
        correct += (logits.argmax(1) == split.y[i:i + batch_size]).sum().item()
    return correct / max(1, len(split.y))


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float
    history: list = field(default_factory=list)
    resumed_from: int = 0


class Batches:
    """Shuffled, augmented, normalised mini-batches from an in-memory uint8 split (last partial batch dropped)."""

    def __init__(self, split: Split, batch_size: int, norm: Normalizer, aug_cfg):
        self.split, self.norm, self.aug = split, norm, aug_cfg
        self.batch_size = min(batch_size, len(split.y))
        self.steps = len(split.y) // self.batch_size

    def __len__(self):
        return self.steps

    def __iter__(self):
        perm = torch.randperm(len(self.split.y))
        for i in range(self.steps):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.split.x[idx].float().div_(255)
            yield self.norm(augment(x, self.aug) if self.aug else x), self.split.y[idx]


def train_step(loss_fn: Callable, optimizer: torch.optim.Optimizer, sched, x, y, progress: float):
    loss, terms, logits = loss_fn(x, y, progress)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sched.step()
    return loss.detach(), terms, logits.detach()


def fit(*, trainable: nn.Module, param_groups: list[dict], loss_fn: Callable, score_fn: Callable,
        train: Split, norm: Normalizer, optim_cfg, aug_cfg, ckpt_path: Path, fingerprint: str, seed: int,
        on_epoch: Callable = lambda rec: None, desc: str = "train", py_rng: random.Random | None = None) -> FitResult:
    """Train `trainable` for optim_cfg.epochs. `loss_fn(x, y, progress) -> (loss, terms, logits)`;
    `score_fn() -> dict` with a 'score' key (validation, higher is better) picks the best epoch."""
    torch.manual_seed(seed)
    py_rng = py_rng or random.Random(seed)
    batches = Batches(train, optim_cfg.batch_size, norm, aug_cfg)
    total = optim_cfg.epochs * len(batches)
    warmup = round(optim_cfg.warmup_epochs * len(batches))
    min_factor = min(optim_cfg.lr * optim_cfg.min_lr_ratio, optim_cfg.min_lr) / optim_cfg.lr
    optimizer = make_optimizer(param_groups, optim_cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, min_factor))
    best = FitResult(best_state=copy.deepcopy(trainable.state_dict()), best_epoch=0, best_score=-math.inf)
    start = 0
    if ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as e:
            raise PWLError(f"resume checkpoint {ckpt_path} is unreadable ({e})",
                           f"delete {ckpt_path} to train from scratch") from None
        if ck.get("fingerprint") == fingerprint:
            trainable.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            torch.set_rng_state(ck["torch_rng"])
            py_rng.setstate(ck["py_rng"])
            best = FitResult(ck["best_state"], ck["best_epoch"], ck["best_score"], ck["history"])
            start = best.resumed_from = ck["epoch"]
            print(f"[{desc}] resuming after epoch {start} from {ckpt_path}", flush=True)
        else:
            print(f"[{desc}] ignoring stale checkpoint {ckpt_path} (params or data changed)", flush=True)
    for rec in best.history:
        on_epoch(rec)
    for epoch in range(start + 1, optim_cfg.epochs + 1):
        trainable.train()
        t0, sums, correct, seen = time.perf_counter(), {}, 0, 0
        bar = tqdm(batches, desc=f"[{desc}] epoch {epoch}/{optim_cfg.epochs}", mininterval=30, leave=False)
        for i, (x, y) in enumerate(bar):
            progress = ((epoch - 1) * len(batches) + i) / total
            loss, terms, logits = train_step(loss_fn, optimizer, sched, x, y, progress)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        trainable.eval()
        val = score_fn()
        rec = {"epoch": epoch, **{f"train/{k}": v / len(batches) for k, v in sums.items()},
               "train/acc": correct / max(1, seen), **{f"val/{k}": v for k, v in val.items()},
               "lr": optimizer.param_groups[0]["lr"], "epoch_s": time.perf_counter() - t0}
        best.history.append(rec)
        if val["score"] > best.best_score:
            best.best_state, best.best_epoch, best.best_score = copy.deepcopy(trainable.state_dict()), epoch, val["score"]
        atomic_save({"fingerprint": fingerprint, "epoch": epoch, "model": trainable.state_dict(),
                     "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
                     "torch_rng": torch.get_rng_state(), "py_rng": py_rng.getstate(),
                     "best_state": best.best_state, "best_epoch": best.best_epoch, "best_score": best.best_score,
                     "history": best.history}, ckpt_path)
        on_epoch(rec)
        print(f"[{desc}] epoch {epoch}: loss {rec['train/loss']:.4f} train acc {rec['train/acc']:.4f} "
              f"val score {val['score']:.4f} ({rec['epoch_s']:.0f}s)", flush=True)
    trainable.load_state_dict(best.best_state)
    trainable.eval()
    return best
