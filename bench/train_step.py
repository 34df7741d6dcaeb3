"""Images/s of our training step (in-memory uint8 batches, batched augmentation, LR schedule) against a bare
PyTorch loop (one fixed, pre-normalised batch; forward, backward, step) on the same model and batch size.

    .venv/bin/python bench/train_step.py [--arch vgg] [--role teacher] [--steps 30] [--params params.yaml]

Runs where params `compute` says (CUDA with AMP/channels_last when a GPU is visible, both loops alike).
Prints both rates and their ratio (target >= 0.9) and writes reports/bench.json.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from pwl.build import build
from pwl.compute import make_compute, set_threads
from pwl.config import load_params
from pwl.data import Batches, Normalizer, Split
from pwl.train import lr_factor, make_optimizer, train_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vgg")
    ap.add_argument("--role", default="teacher", choices=("teacher", "student"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="reports/bench.json")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)
    threads = set_threads(params.threads)
    compute = make_compute(params.compute)
    sync = torch.cuda.synchronize if compute.device.type == "cuda" else (lambda: None)
    cfg = params.for_arch(args.arch)
    model_cfg, optim_cfg = (cfg.teacher, cfg.train_teacher) if args.role == "teacher" else (cfg.student, cfg.train_student)
    bs, size = optim_cfg.batch_size, params.data.image_size
    n = bs * (args.steps + 2)

    class Shape:  # what build() needs of a dataset
        in_chans, num_classes, image_size = 1, 10, size

    torch.manual_seed(0)
    split = compute.split(Split(torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8),
                                torch.randint(0, 10, (n,))))
    norm = Normalizer([0.3], [0.3])

    def ours() -> float:
        model = compute.module(build(model_cfg, Shape))
        model.train()
        opt = make_optimizer([{"params": model.parameters()}], optim_cfg)
        scaler = torch.amp.GradScaler("cuda") if compute.needs_grad_scaler else None
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 10_000, 0, 0.01))

        def loss_fn(x, y, progress):
            logits = model(x)
            return F.cross_entropy(logits, y), {}, logits
        it = Batches(split, bs, norm, params.augment, compute).epoch(seed=0)
        train_step(loss_fn, opt, sched, *next(it), 0.0, compute, scaler)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(loss_fn, opt, sched, *next(it), 0.0, compute, scaler)
        sync()
        return args.steps * bs / (time.perf_counter() - t0)

    def bare() -> float:
        model = compute.module(build(model_cfg, Shape))
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) \
            if optim_cfg.optimizer == "sgd" else torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = compute.batch(norm(split.x[:bs].to(compute.device))), split.y[:bs].to(compute.device)
        for i in range(args.steps + 1):
            if i == 1:
                sync()
                t0 = time.perf_counter()
            with compute.autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # (float16 without a scaler: fine for timing)
            opt.step()
        sync()
        return args.steps * bs / (time.perf_counter() - t0)

    ours_rates, bare_rates = [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        bare_rates.append(bare())
        ours_rates.append(ours())
    o, b = sorted(ours_rates)[len(ours_rates) // 2], sorted(bare_rates)[len(bare_rates) // 2]
    result = {"arch": args.arch, "role": args.role, "batch_size": bs, "steps": args.steps, "rounds": args.rounds,
              "threads": threads, "device": str(compute.device), "amp": str(compute.amp_dtype),
              "augment": params.augment.model_dump(), "ours_img_s": o, "bare_img_s": b,
              "ratio": o / b}
    print(f"{args.arch}/{args.role} batch {bs}, {threads} threads: ours {o:.0f} img/s, bare loop {b:.0f} img/s, "
          f"ratio {o / b:.3f} (target >= 0.9)")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
