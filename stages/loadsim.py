"""Stage `loadsim@{arch, device}`: accuracy against time since launch on a throttled device, for
teacher-only, student-only, PWL in prefix order, PWL in this device's value order (the export's
`value_<device>`: largest modelled area under validation accuracy) and PWL out of order (every teacher block
requested at once, each block swapped in as it arrives: the state is whatever subset has arrived); measured (repeated)
and modelled (bytes / bandwidth + latency + measured compute). On `loadsim.http_devices`, teacher-only and PWL
prefix also over HTTP: range requests to a server on loopback that this stage starts and stops. Scored with
test accuracies. Last, a cold launch: a fresh `python` to PWL's first answer, imports included."""
from contextlib import ExitStack

import pandas as pd

from pwl import paths, table_schema
from pwl.atomic import atomic_write
from pwl.compute import seed_and_threads
from pwl.data import Normalizer, load_prepared
from pwl.env import machine
from pwl.errors import PWLError
from pwl.mixing import load_trained_mixed
from pwl.runtime import pack_index, predicted_timeline, read_orders
from pwl.runtime.cold import cold_launch
from pwl.runtime.http import HttpReader, serve
from pwl.runtime.measure import compare_strategies
from pwl.runtime.simulate import torch_threads
from pwl.stage_cli import elapsed, main, setup, write_json


def run():
    params, args = setup(__doc__, options={"device": "an entry of params.yaml `loadsim.devices`"})
    seed_and_threads(params)
    if params.loadsim is None:
        raise PWLError("params.yaml has no `loadsim` section", "add one (see conf/config.yaml)")
    cfg, sim = params.for_arch(args.arch), params.loadsim
    device = sim.device(args.device)
    shard_dir = paths.shards(args.arch)
    value = f"value_{args.device}"
    orders, index = read_orders(shard_dir, ("prefix",)), pack_index(shard_dir)
    if value not in orders:
        raise PWLError(f"the export of {args.arch} has no loading order {value!r}",
                       f"export again with this device in loadsim.devices (dvc repro export@{args.arch})")
    ds = load_prepared(paths.DATA)
    mixed = load_trained_mixed(args.arch, cfg, ds, params.seed)
    states = table_schema.states_table(paths.states_table(params.profile, args.arch, params.seed), args.arch,
                                       params.seed)
    accuracy = {s: 100 * a for s, a in zip(states["state"], states["test_acc"])}
    norm = Normalizer(ds.manifest["mean"], ds.manifest["std"])
    x = norm(ds.test.x[:sim.request_batch])
    teacher_only_load = predicted_timeline(index, device, "teacher_only")[-1]["t"]
    horizon = max(sim.horizon_s, sim.horizon_teacher_loads * teacher_only_load)
    strategies = {"teacher_only": ("teacher_only", None), "student_only": ("student_only", None),
                  "pwl_prefix": ("pwl", orders["prefix"]), "pwl_value": ("pwl", orders[value]),
                  "pwl_parallel": ("parallel", None)}
    with ExitStack() as stack, torch_threads(device.threads):
        if args.device in sim.http_devices:  # the same, fetched by range requests from a server on loopback
            url = stack.enter_context(serve(shard_dir, device.open_latency_s))
            for name in ("teacher_only", "pwl_prefix"):
                strategies[f"{name}_http"] = (*strategies[name], lambda: HttpReader.from_profile(device, url))
        metrics, timeline, curves = compare_strategies(mixed, shard_dir, device, strategies, x, accuracy,
                                                       sim.repeats, horizon)
    cold = cold_launch(shard_dir, device)  # a fresh python to PWL's first answer: what the interpreter costs
    out = paths.loadsim_dir(params.profile, args.arch, args.device)
    for file, rows in (("timelines.csv", timeline), ("curves.csv", curves)):
        atomic_write(out / file, lambda tmp, rows=rows: pd.DataFrame(rows).to_csv(tmp, index=False,
                                                                                  float_format="%.6f"))
    ttfa = {k: v["ttfa_s"]["median"] for k, v in metrics.items()}
    write_json(out / "metrics.json", {
        "arch": args.arch, "device": device.model_dump(), "horizon_s": horizon, "repeats": sim.repeats,
        "request_batch": sim.request_batch,
        "orders": {"prefix": orders["prefix"], "value": orders[value]},
        "ttfa_ratio_teacher_over_pwl": ttfa["teacher_only"] / ttfa["pwl_prefix"], "cold_launch": cold,
        "strategies": metrics, **machine(), "wall_s": elapsed()})  # machine(): where the timings were taken
    print(f"{args.arch}@{args.device}: TTFA teacher-only {ttfa['teacher_only'] * 1e3:.1f} ms, "
          f"PWL {ttfa['pwl_prefix'] * 1e3:.1f} ms (x{ttfa['teacher_only'] / ttfa['pwl_prefix']:.1f})")


if __name__ == "__main__":
    main(run)
