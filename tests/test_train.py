"""The training loop: per-step cosine schedule, per-epoch checkpoints, exact resume, best-epoch selection."""
import copy
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_mixed
from pwl.build import freeze
from pwl.mixing import distilled_parts
from pwl.config import AugmentConfig, LossConfig, OptimConfig
from pwl.data import Normalizer, Split
from pwl.errors import PWLError
from pwl.losses import pwl_loss
from pwl.evaluation import accuracy
from pwl.train import Trainee, TrainingRun, fit, lr_factor, make_optimizer

NORM1 = Normalizer([0.5], [0.25])
NORM3 = Normalizer([0.5] * 3, [0.25] * 3)
AUG = AugmentConfig(crop_pad_frac=0.25, flip=True, rotate_deg=15)


class Interrupt(Exception):
    pass


def tiny_split(n=32, chans=1, size=8, classes=3, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, chans, size, size), dtype=torch.uint8, generator=g),
                 torch.randint(0, classes, (n,), generator=g))


def tiny_net(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def fit_plain(model, ckpt, fp="fp", epochs=2, scores=None, on_epoch=lambda rec: None, optim=None, seed=0):
    """Cross-entropy training of a tiny classifier; `scores` is a shared list so that scores increase across
    an interrupted run and its resumption (the last epoch is then the best)."""
    scores = scores if scores is not None else []

    def score_fn():
        scores.append(len(scores) + 1)
        return {"score": float(scores[-1]), "calls": len(scores)}

    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {"ce": F.cross_entropy(logits, y).detach()}, logits

    optim = optim or OptimConfig(lr=0.05, epochs=epochs, batch_size=8)
    return fit(Trainee(model, [{"params": list(model.parameters())}], loss_fn, score_fn),
               TrainingRun(train=tiny_split(), norm=NORM1, optim=optim, augment=AUG, checkpoint=ckpt,
                           fingerprint=fp, seed=seed, on_epoch=on_epoch, desc="test"))


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ schedule

def test_lr_factor_cosine():
    total, mf = 100, 0.05
    fs = [lr_factor(s, total, 0, mf) for s in range(total + 1)]
    assert fs[0] == pytest.approx(1.0) and fs[-1] == pytest.approx(mf)
    assert fs[(total - 1) // 2] == pytest.approx(mf + (1 - mf) * 0.5, abs=0.02)
    assert all(a >= b for a, b in zip(fs, fs[1:]))
    assert fs[total - 1] == pytest.approx(mf)  # the last optimiser step runs at the minimum
    assert lr_factor(10 * total, total, 0, mf) == pytest.approx(mf)  # clamps past the end


def test_lr_factor_warmup():
    fs = [lr_factor(s, 100, 10, 0.0) for s in range(101)]
    assert fs[0] == pytest.approx(0.1) and fs[9] == pytest.approx(1.0) and fs[10] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(fs[:10], fs[1:10]))
    assert fs[100] == pytest.approx(0.0)


def test_make_optimizer():
    p = [nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer([{"params": p}], OptimConfig(optimizer="sgd", lr=0.1, momentum=0.8, weight_decay=1e-3))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    adamw = make_optimizer([{"params": p}], OptimConfig(optimizer="adamw", lr=0.1, weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.05


def test_accuracy():
    split = Split(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 1, 0, 1]))
    fwd = lambda x: torch.tensor([[0.0, 1.0]]).expand(len(x), 2)  # noqa: E731  always class 1
    assert accuracy(fwd, split, NORM1, batch_size=2) == pytest.approx(3 / 5)


# ------------------------------------------------------------------ fit

def test_fit_writes_checkpoint_and_follows_schedule(tmp_path):
    ckpt = tmp_path / "ck" / "run.pt"
    model = tiny_net()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    res = fit_plain(model, ckpt)
    assert ckpt.exists() and not ckpt.with_name(ckpt.name + ".tmp").exists()
    ck = torch.load(ckpt, weights_only=False)
    assert ck["epoch"] == 2 and ck["fingerprint"] == "fp" and len(ck["history"]) == 2
    assert res.best_epoch == 2 and res.resumed_from == 0 and len(res.history) == 2
    assert not same_state(ck["model"], init)
    assert same_state(model.state_dict(), ck["best_state"])
    rec = res.history[-1]
    for key in ("epoch", "train/loss", "train/ce", "train/acc", "val/score", "val/calls", "lr", "epoch_s"):
        assert key in rec, key
    # per-step cosine over 8 steps (4 per epoch) reaching the minimum at step 7: after epoch 1, step 4 of 7
    lr, mf = 0.05, min(0.05 * 0.05, 1e-5) / 0.05
    assert res.history[0]["lr"] == pytest.approx(lr * (mf + (1 - mf) * 0.5 * (1 + math.cos(math.pi * 4 / 7))))
    assert res.history[-1]["lr"] == pytest.approx(lr * mf)
    assert not model.training


def test_fit_resumes_a_finished_run_without_extra_epochs(tmp_path):
    ckpt = tmp_path / "run.pt"
    model = tiny_net()
    fit_plain(model, ckpt)
    replayed, scores = [], []
    res = fit_plain(tiny_net(seed=9), ckpt, on_epoch=replayed.append, scores=scores)
    assert res.resumed_from == 2 and res.best_epoch == 2 and len(res.history) == 2
    assert scores == []  # no epoch ran, so validation never ran
    assert [r["epoch"] for r in replayed] == [1, 2]  # the history is replayed to the logger
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    full_model = tiny_net()
    fit_plain(full_model, tmp_path / "full.pt", scores=[])

    def stop_after_first(rec):
        if rec["epoch"] == 1:
            raise Interrupt

    scores, ckpt = [], tmp_path / "cut.pt"
    with pytest.raises(Interrupt):
        fit_plain(tiny_net(), ckpt, scores=scores, on_epoch=stop_after_first)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    resumed_model = tiny_net(seed=3)  # different init: everything must come from the checkpoint
    res = fit_plain(resumed_model, ckpt, scores=scores)
    assert res.resumed_from == 1 and res.best_epoch == 2 and len(res.history) == 2
    assert same_state(resumed_model.state_dict(), full_model.state_dict())
    full_ck, cut_ck = torch.load(tmp_path / "full.pt", weights_only=False), torch.load(ckpt, weights_only=False)
    assert same_state(full_ck["model"], cut_ck["model"])
    assert full_ck["history"][-1]["train/loss"] == cut_ck["history"][-1]["train/loss"]


def test_new_fingerprint_starts_fresh(tmp_path, capsys):
    ckpt = tmp_path / "run.pt"
    fit_plain(tiny_net(), ckpt, fp="old")
    scores = []
    res = fit_plain(tiny_net(), ckpt, fp="new", scores=scores)
    assert res.resumed_from == 0 and scores == [1, 2]
    assert "ignoring stale checkpoint" in capsys.readouterr().out
    assert torch.load(ckpt, weights_only=False)["fingerprint"] == "new"


def test_best_epoch_is_restored(tmp_path):
    ckpt = tmp_path / "run.pt"
    model = tiny_net()
    vals = iter([{"score": 5.0}, {"score": 1.0}])  # epoch 1 is the best

    def loss_fn(x, y, progress):
        logits = model(x)
        return F.cross_entropy(logits, y), {}, logits

    res = fit(Trainee(model, [{"params": list(model.parameters())}], loss_fn, lambda: next(vals)),
              TrainingRun(train=tiny_split(), norm=NORM1, optim=OptimConfig(lr=0.05, epochs=2, batch_size=8),
                          augment=None, checkpoint=ckpt, fingerprint="fp", seed=0))
    ck = torch.load(ckpt, weights_only=False)
    assert res.best_epoch == 1 and res.best_score == 5.0
    assert same_state(model.state_dict(), ck["best_state"])
    assert not same_state(model.state_dict(), ck["model"])  # the last epoch's weights were not kept


def test_unreadable_resume_checkpoint(tmp_path):
    ckpt = tmp_path / "run.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(PWLError, match="unreadable"):
        fit_plain(tiny_net(), ckpt)


def test_distillation_resume_is_exact(tmp_path):
    """PWL distillation (random cross states drawn from py_rng) resumes to the same weights."""
    data = tiny_split(n=16, chans=3, classes=5, seed=1)
    optim = OptimConfig(lr=0.02, epochs=2, batch_size=8)
    loss_cfg = LossConfig(cross_mode="random", aux_ramp=0.5)

    def run(ckpt, on_epoch=lambda rec: None, scores=None):
        mixed = make_mixed("vgg")
        freeze(mixed.teacher)
        parts = distilled_parts(mixed)
        rng = random.Random(0)
        scores = scores if scores is not None else []

        def score_fn():
            scores.append(len(scores) + 1)
            return {"score": float(scores[-1])}

        groups = [{"params": list(mixed.student.parameters()), "lr": 0.02},
                  {"params": list(mixed.converters.parameters()), "lr": 0.004}]
        res = fit(Trainee(parts, groups, lambda x, y, p: pwl_loss(mixed, x, y, loss_cfg, rng, p), score_fn,
                          py_rng=rng),
                  TrainingRun(train=data, norm=NORM3, optim=optim, augment=AUG, checkpoint=ckpt, fingerprint="d",
                              seed=0, on_epoch=on_epoch))
        return mixed, res

    full, _ = run(tmp_path / "full.pt")

    def stop(rec):
        if rec["epoch"] == 1:
            raise Interrupt

    scores = []
    with pytest.raises(Interrupt):
        run(tmp_path / "cut.pt", on_epoch=stop, scores=scores)
    resumed, res = run(tmp_path / "cut.pt", scores=scores)
    assert res.resumed_from == 1
    assert same_state(distilled_parts(resumed).state_dict(), distilled_parts(full).state_dict())
    assert all(math.isfinite(r["train/loss"]) for r in res.history)
    assert {"train/hard", "train/soft", "train/sync", "train/recon", "train/cross"} <= set(res.history[-1])


def test_clip_grad_norm_changes_a_step_exactly_as_torch_does():
    """`optim.clip_grad_norm` rescales the gradients of every trained parameter together, as
    torch.nn.utils.clip_grad_norm_ does, before the optimiser step; 0 leaves the step alone."""
    from pwl.train import make_optimizer, train_step
    torch.manual_seed(0)
    x, y = torch.randn(8, 6) * 50, torch.randint(0, 3, (8,))
    results = {}
    for clip in (0.0, 0.5):
        torch.manual_seed(1)
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
        ref = copy.deepcopy(net)
        cfg = OptimConfig(lr=0.1, momentum=0.0, weight_decay=0.0, clip_grad_norm=clip)
        opt = make_optimizer([{"params": net.parameters()}], cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

        def objective(a, b, p, net=net):
            z = net(a)
            return nn.functional.cross_entropy(z, b), {}, z
        train_step(objective, opt, sched, x, y, 0.0, clip=cfg.clip_grad_norm)
        nn.functional.cross_entropy(ref(x), y).backward()
        norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), clip or float("inf"))
        with torch.no_grad():
            for p in ref.parameters():
                p -= 0.1 * p.grad
        for a, b in zip(net.parameters(), ref.parameters()):
            assert torch.allclose(a, b, atol=1e-6)
        results[clip] = norm.item()
    assert results[0.5] > 0.5  # the cap was active, so the clipped step really differs
