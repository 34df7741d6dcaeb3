"""Does scoring the 2^N loading states in bfloat16 give the float32 numbers? The `evaluate` stage scores in float32
(the published numbers); this measures, on the trained models of the current params (replica `seed`), every
state's test accuracy in float32 and under the bf16 autocast that training uses, and the time of each.

    .venv/bin/python bench/eval_precision.py [--params params.yaml] [--archs vgg resnet vit] [--out reports/bench]

Writes `<out>/eval_precision.csv` (one row per arch and state) and `<out>/eval_precision.md` (per arch: largest
and mean absolute difference in points, states whose difference exceeds the 95% Wilson half-width of a single accuracy,
whether the worst state and the prefix order's steps keep their sign, seconds per precision). Needs the trained
weights of `dvc repro` (teacher and pwl of each arch) in the workspace.
"""
import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from pwl import paths
from pwl.compute import cpu_has_bf16, make_compute, set_threads
from pwl.config import load_params
from pwl.data import Normalizer, load_prepared
from pwl.env import cpu_model
from pwl.mixing import load_trained_mixed, state_accuracies
from pwl.report.stats import wilson_half_pct
from pwl.states import all_states, lattice_summary, prefix_order


def score(mixed, states, split, norm, batch_size, compute, bf16: bool) -> tuple[dict, float]:
    """Every state's accuracy (%) and the seconds it took, in float32 or under CPU bf16 autocast."""
    t0 = time.perf_counter()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with ctx:
        acc = state_accuracies(mixed, states, split, norm, batch_size, compute)
    return {s: 100 * a for s, a in acc.items()}, time.perf_counter() - t0


def compare(arch: str, fp32: dict, bf16: dict, n_test: int, n_blocks: int) -> dict:
    diff = pd.Series({s: bf16[s] - fp32[s] for s in fp32})
    half = pd.Series({s: wilson_half_pct(fp32[s], n_test) for s in fp32})
    prefix = prefix_order(n_blocks)
    steps32 = [fp32[b] - fp32[a] for a, b in zip(prefix, prefix[1:])]
    steps16 = [bf16[b] - bf16[a] for a, b in zip(prefix, prefix[1:])]
    worst32 = lattice_summary({s: a / 100 for s, a in fp32.items()})["worst_state"]
    worst16 = lattice_summary({s: a / 100 for s, a in bf16.items()})["worst_state"]
    return {"arch": arch, "states": len(fp32), "max abs diff pt": diff.abs().max(), "mean abs diff pt": diff.abs().mean(),
            "mean diff pt": diff.mean(), "beyond Wilson half-width": int((diff.abs() > half).sum()),
            "worst state fp32 / bf16": f"{worst32} / {worst16}",
            "prefix steps same sign": sum((a > 0) == (b > 0) for a, b in zip(steps32, steps16)),
            "prefix steps": len(steps32)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--archs", nargs="*")
    ap.add_argument("--out", default="reports/bench")
    args = ap.parse_args()
    params = load_params(args.params)
    if not cpu_has_bf16():
        raise SystemExit("this CPU has no native bfloat16: nothing to compare (float32 is what runs here)")
    threads = set_threads(params.threads)
    compute = make_compute(params.compute)
    ds = load_prepared(paths.DATA)
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    n_test = len(ds.test.y)
    rows, summary = [], []
    for arch in args.archs or params.archs:
        cfg = params.for_arch(arch)
        mixed = compute.module(load_trained_mixed(arch, cfg, ds, params.seed))
        states = all_states(mixed.num_blocks)
        score(mixed, states[:2], ds.val, norm, params.eval.batch_size, compute, True)  # warm-up: oneDNN kernels
        fp32, t32 = score(mixed, states, ds.test, norm, params.eval.batch_size, compute, False)
        bf16, t16 = score(mixed, states, ds.test, norm, params.eval.batch_size, compute, True)
        rows += [{"arch": arch, "state": s, "fp32": fp32[s], "bf16": bf16[s], "diff": bf16[s] - fp32[s]}
                 for s in states]
        summary.append({**compare(arch, fp32, bf16, n_test, mixed.num_blocks), "fp32 s": t32, "bf16 s": t16,
                        "speed-up": t32 / t16})
        print(summary[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "eval_precision.csv", index=False, float_format="%.4f")
    table = pd.DataFrame(summary)
    (out / "eval_precision.md").write_text(
        f"# Scoring every loading state in float32 and in bf16 autocast\n\n`python bench/eval_precision.py` on "
        f"{cpu_model()}, {threads} threads, profile `{params.profile}`, replica {params.seed}, {n_test:,} test "
        f"images, compute `{compute.precision}` models. `diff` = bf16 - fp32 test accuracy of the same state, in "
        "points; `beyond Wilson half-width` counts states whose difference exceeds the 95% Wilson half-width of a "
        "single accuracy (test-set noise). Every state: `eval_precision.csv`.\n\n"
        + table.to_markdown(index=False, floatfmt=".2f") + "\n")


if __name__ == "__main__":
    main()
