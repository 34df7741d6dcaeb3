"""Stage `loadsim@{arch, device}`: accuracy against time since launch on a throttled device, for
teacher-only, student-only, PWL in prefix order and PWL in the best validation order; measured (repeated)
and modelled (bytes / bandwidth + latency + measured compute)."""
import pandas as pd

from pwl import paths
from pwl.build import load_trained_mixed
from pwl.data import Normalizer, load_prepared
from pwl.errors import PWLError
from pwl.runtime import load_state_accuracy, predicted_timeline, read_manifest
from pwl.runtime.measure import compare_strategies
from pwl.runtime.simulate import torch_threads
from pwl.stage import elapsed, main, setup, write_json


def run():
    params, args = setup(__doc__, options={"device": "an entry of params.yaml `loadsim.devices`"})
    if params.loadsim is None:
        raise PWLError("params.yaml has no `loadsim` section", "add one (see conf/config.yaml)")
    cfg, sim = params.for_arch(args.arch), params.loadsim
    profile = sim.device(args.device)
    ds = load_prepared(paths.DATA)
    mixed = load_trained_mixed(args.arch, cfg, ds)
    shard_dir = paths.shards(args.arch)
    manifest = read_manifest(shard_dir)
    accuracy = {s: 100 * a for s, a in load_state_accuracy(paths.states_table(args.arch), "test_acc").items()}
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    x = norm(ds.test.x[:sim.request_batch])
    teacher_only_load = predicted_timeline(manifest, profile, "teacher_only")[-1]["t"]
    horizon = max(sim.horizon_s, sim.horizon_teacher_loads * teacher_only_load)
    strategies = {"teacher_only": None, "student_only": None,
                  "pwl_prefix": manifest["orders"]["prefix"], "pwl_best_val": manifest["orders"]["best_val"]}
    with torch_threads(profile.threads):
        metrics, timeline, curves = compare_strategies(mixed, shard_dir, profile, strategies, x, accuracy,
                                                       sim.repeats, horizon)
    out = paths.loadsim_dir(args.arch, args.device)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(timeline).to_csv(out / "timelines.csv", index=False, float_format="%.6f")
    pd.DataFrame(curves).to_csv(out / "curves.csv", index=False, float_format="%.6f")
    ttfa = {k: v["ttfa_s"]["median"] for k, v in metrics.items()}
    write_json(out / "metrics.json", {
        "arch": args.arch, "device": profile.model_dump(), "horizon_s": horizon, "repeats": sim.repeats,
        "request_batch": sim.request_batch, "orders": {k: manifest["orders"][k] for k in ("prefix", "best_val")},
        "ttfa_ratio_teacher_over_pwl": ttfa["teacher_only"] / ttfa["pwl_prefix"],
        "strategies": metrics, "wall_s": elapsed()})
    print(f"{args.arch}@{args.device}: TTFA teacher-only {ttfa['teacher_only'] * 1e3:.1f} ms, "
          f"PWL {ttfa['pwl_prefix'] * 1e3:.1f} ms (x{ttfa['teacher_only'] / ttfa['pwl_prefix']:.1f})")


if __name__ == "__main__":
    main(run)
