"""Training and evaluation speed per model family and phase, in float32 and in the precision `compute` resolves to
here, side by side in one run; and how far each step is from this machine's measured matmul peak (a roofline line).

    .venv/bin/python bench/precision.py [--params params.yaml] [--archs vgg resnet vit] [--steps 6] [--out reports/bench]

Phases are the pipeline's: `teacher` and `student` (cross-entropy training steps), `kd` (frozen teacher forward +
student step), `distill` (the PWL objective of the arch's params: every term, the cross mode's sampled states) and
`evaluate` (the forward passes that score all 2^N loading states). Each step runs the real `pwl.train.train_step`
on a fixed batch of the profile's size (random pixels: speed does not depend on them). FLOPs per step come from
`torch.utils.flop_counter` (matmuls and convolutions, forward and backward); the peak is a large square matmul in
the same precision with the same threads. Writes `<out>/precision.csv`, `<out>/precision.md` (the committed table)
and `<out>/vit_bf16_profile.md` (where a ViT step spends its time in each precision: why its attention stays fp32).
"""
import argparse
import json
import random
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from torch.utils.flop_counter import FlopCounterMode

from pwl.build import build, freeze
from pwl.compute import Compute, cpu_has_bf16, make_compute, set_threads
from pwl.config import load_params
from pwl.env import cpu_model, machine
from pwl.losses import kd_loss, pwl_loss
from pwl.models.vit import CpuBf16Attention
from pwl.states import all_states
from pwl.mixing import build_mixed, logits_of_all_states
from pwl.train import lr_factor, make_optimizer, train_step

PHASES = ("teacher", "student", "kd", "distill", "evaluate")


class Shape:
    """What `build` needs of a prepared dataset."""

    def __init__(self, params, in_chans):
        self.in_chans, self.num_classes, self.image_size = in_chans, 10, params.data.image_size


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 6) -> float:
    """FLOP/s of an n x n matmul in `dtype`: the ceiling a training step of this machine can approach."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def phase_step(phase: str, cfg, shape: Shape, compute: Compute, seed: int = 0, attention=None):
    """(one step as a closure, batch size) for `phase` of an arch's params, its models placed by `compute`
    (`attention`: a ViT's attention class to swap in, for the profile)."""
    torch.manual_seed(seed)
    if phase in ("teacher", "student"):
        model_cfg, optim = (cfg.teacher, cfg.train_teacher) if phase == "teacher" else (cfg.student, cfg.train_student)
        model = compute.module(build(model_cfg, shape)).train()
        for m in model.modules():
            if attention is not None and isinstance(m, Attention):
                m.__class__ = attention

        def loss_fn(x, y, progress):
            logits = model(x)
            return F.cross_entropy(logits, y), {}, logits
        return trainer(loss_fn, [{"params": model.parameters()}], optim, compute), optim.batch_size
    if phase == "kd":
        k = cfg.kd
        teacher, student = freeze(compute.module(build(cfg.teacher, shape))), compute.module(build(cfg.student, shape))

        def loss_fn(x, y, progress):
            with torch.no_grad():
                z_t = teacher(x)
            z = student(x)
            return kd_loss(z, z_t, y, k.alpha, k.temperature)[0], {}, z
        return trainer(loss_fn, [{"params": student.parameters()}], k.optim, compute), k.optim.batch_size
    d = cfg.distill
    mixed = build_mixed(cfg, shape)
    freeze(mixed.teacher)
    compute.module(mixed)
    if phase == "distill":
        rng = random.Random(seed)
        groups = [{"params": mixed.student.parameters()}, {"params": mixed.converters.parameters()}]
        return trainer(lambda x, y, p: pwl_loss(mixed, x, y, d.loss, rng, p), groups, d.optim, compute), \
            d.optim.batch_size
    freeze(mixed)
    states = all_states(mixed.num_blocks)

    @torch.no_grad()
    def evaluate(x, y):
        with compute.autocast():
            logits_of_all_states(mixed, x, states)
    return evaluate, 1000


def trainer(loss_fn, groups, optim, compute: Compute):
    opt = make_optimizer(groups, optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, 10_000, 0, 0.01))
    return lambda x, y: train_step(loss_fn, opt, sched, x, y, 0.5, compute, None, optim.clip_grad_norm)


def batch(shape: Shape, n: int, compute: Compute):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, shape.in_chans, shape.image_size, shape.image_size, generator=g)
    return compute.batch(x), torch.randint(0, shape.num_classes, (n,), generator=g)


def rate(step, x, y, steps: int) -> float:
    """Images/s of `step`, median of three timed rounds after a warm-up step."""
    step(x, y)
    rounds = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step(x, y)
        rounds.append(len(y) * steps / (time.perf_counter() - t0))
    return sorted(rounds)[1]


def flops_per_image(step, x, y) -> float:
    with FlopCounterMode(display=False) as fc:
        step(x, y)
    return fc.get_total_flops() / len(y)


def profile_vit(cfg, shape: Shape, out: Path, steps: int) -> None:
    """Top operators of a ViT teacher training step in float32, in bfloat16 autocast with timm's attention (all
    of it in bf16) and with ours (pwl.models.vit.CpuBf16Attention: softmax(QK^T)V in float32): why ours."""
    lines = ["# Where a ViT teacher training step spends its time (torch.profiler, self CPU time, "
             f"{steps} steps)", ""]
    bf16 = Compute(torch.device("cpu"), torch.bfloat16, True)
    for name, c, attention in (("float32", Compute(torch.device("cpu")), None),
                               ("bfloat16 autocast, timm's attention in bf16", bf16, Attention),
                               ("bfloat16 autocast, attention in float32 (ours)", bf16, CpuBf16Attention)):
        step, bs = phase_step("teacher", cfg, shape, c, attention=attention)
        x, y = batch(shape, bs, c)
        step(x, y)
        t0 = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step(x, y)
        img_s = bs * steps / (time.perf_counter() - t0)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=48)
        lines += [f"## {name}: {img_s:.0f} img/s (under the profiler)", "", "```", table.strip(), "```", ""]
    out.write_text("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--archs", nargs="*")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--in-chans", type=int, default=1, help="1 = Fashion-MNIST (default profile), 3 = CIFAR")
    ap.add_argument("--out", default="reports/bench")
    args = ap.parse_args()
    params = load_params(args.params)
    threads = set_threads(params.threads)
    shape, out = Shape(params, args.in_chans), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fp32_cfg = params.compute.model_copy(update={"amp": "off", "channels_last": "off"})
    peaks = {"fp32": matmul_peak(torch.float32)}
    if cpu_has_bf16():
        peaks["bf16"] = matmul_peak(torch.bfloat16)
    rows = []
    for arch in args.archs or params.archs:
        cfg = params.for_arch(arch)
        chosen = make_compute(params.compute)
        for phase in PHASES:
            row = {"arch": arch, "phase": phase, "chosen": chosen.precision}
            for label, c in (("fp32", make_compute(fp32_cfg)), ("chosen", chosen)):
                step, bs = phase_step(phase, cfg, shape, c)
                x, y = batch(shape, bs, c)
                row[f"{label}_img_s"] = rate(step, x, y, args.steps)
                if label == "fp32":
                    row["batch"], row["gflop_per_img"] = bs, flops_per_image(step, x, y) / 1e9
            row["speedup"] = row["chosen_img_s"] / row["fp32_img_s"]
            peak = peaks["bf16" if chosen.amp_dtype is torch.bfloat16 else "fp32"]
            row["chosen_gflop_s"] = row["gflop_per_img"] * row["chosen_img_s"]
            row["of_peak"] = row["chosen_gflop_s"] * 1e9 / peak
            rows.append(row)
            print(f"{arch:7s} {phase:9s} fp32 {row['fp32_img_s']:7.0f} img/s   {chosen.precision:20s} "
                  f"{row['chosen_img_s']:7.0f} img/s  x{row['speedup']:.2f}  {row['chosen_gflop_s']:6.1f} GFLOP/s "
                  f"({100 * row['of_peak']:.0f}% of peak)", flush=True)
    if "vit" in (args.archs or params.archs) and cpu_has_bf16():
        profile_vit(params.for_arch("vit"), shape, out / "vit_bf16_profile.md", args.steps)
    table = pd.DataFrame(rows)
    table.to_csv(out / "precision.csv", index=False, float_format="%.4g")
    head = (f"CPU: {cpu_model()}, {threads} threads, native bf16: {cpu_has_bf16()}; matmul peak (2048^3): "
            + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
            + f"; images {shape.in_chans}x{shape.image_size}x{shape.image_size}, batch sizes of the profile "
              f"(evaluate: 1000, all 2^N states).")
    md = table.assign(**{"fp32_img_s": table.fp32_img_s.round(0), "chosen_img_s": table.chosen_img_s.round(0),
                         "speedup": table.speedup.map("{:.2f}x".format),
                         "gflop_per_img": table.gflop_per_img.map("{:.3f}".format),
                         "chosen_gflop_s": table.chosen_gflop_s.round(1),
                         "of_peak": table.of_peak.map("{:.0%}".format)})
    (out / "precision.md").write_text(head + "\n\n" + md.to_markdown(index=False) + "\n")
    (out / "precision.json").write_text(json.dumps({"machine": machine(), "peak_flop_s": peaks}, indent=2))
    print(head)


if __name__ == "__main__":
    main()
