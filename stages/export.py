"""Stage `export@arch`: the teacher, the distilled student and the converters as one pack (pwl.runtime.pack:
laid out in the order a device needs its bytes, with byte ranges, sha256 and the validation accuracy of every
state in its header), and beside it the loading orders the runtime may follow (orders.json): prefix, suffix,
the best order on the *validation* accuracies against bytes loaded (`best_val`), and per device of
`loadsim.devices` the order with the largest area under validation accuracy against the modelled load time on
that device (`value_<device>`: latency + bytes / bandwidth per block, exact DP over subsets;
pwl.runtime.orders). Also the weight bytes every state needs (reports/metrics/<arch>/state_bytes.csv, read by
the report and by `python -m pwl.budget`)."""
from pwl import paths, table_schema
from pwl.atomic import atomic_write
from pwl.budget import bytes_table_path, state_bytes_table
from pwl.compute import seed_and_threads
from pwl.data import load_prepared
from pwl.env import machine
from pwl.errors import PWLError
from pwl.evaluation import block_bytes
from pwl.mixing import load_trained_mixed
from pwl.runtime import block_seconds, export_pack, model_configs, value_order, write_orders
from pwl.stage_cli import elapsed, main, setup, write_json
from pwl.states import best_order, prefix_order, suffix_order


def run():
    params, args = setup(__doc__)
    seed_and_threads(params)
    cfg = params.for_arch(args.arch)
    # first, before anything heavy: finite accuracies in [0, 1] for every state, so no NaN reaches a pack
    table = table_schema.states_table(paths.states_table(params.profile, args.arch, params.seed), args.arch,
                                      params.seed)
    ds = load_prepared(paths.DATA)
    mixed = load_trained_mixed(args.arch, cfg, ds, params.seed)
    n = mixed.num_blocks
    if len(table["state"].iloc[0]) != n:
        raise PWLError(f"{paths.states_table(params.profile, args.arch, params.seed)} has states of "
                       f"{len(table['state'].iloc[0])} blocks, the model {n}",
                       f"rerun `dvc repro -f evaluate@{args.arch}-{params.seed}`")
    val_acc = {s: float(a) for s, a in zip(table["state"], table["val_acc"])}
    orders = {"prefix": prefix_order(n), "suffix": suffix_order(n),
              "best_val": best_order(val_acc, block_bytes(mixed.teacher))}
    configs = model_configs(cfg.teacher, cfg.student, ds.in_chans, ds.num_classes, ds.image_size)
    out = paths.shards(args.arch)
    index = export_pack(mixed, out, configs, val_acc)
    devices = {}
    if params.loadsim is not None:  # the value orders need the pack's bytes
        for name in params.loadsim.devices:
            device = params.loadsim.device(name)
            orders[f"value_{name}"] = value_order(val_acc, index, device)
            devices[name] = {"profile": device.model_dump(), "block_s": block_seconds(index, device),
                             "order": f"value_{name}"}
    write_orders(out, n, orders, devices)
    nbytes = state_bytes_table(out)
    atomic_write(bytes_table_path(params.profile, args.arch), lambda tmp: nbytes.to_csv(tmp, index=False))
    write_json(paths.arch_metrics(params.profile, args.arch, "export.json"), {
        "orders": orders, "pack_bytes": index.header_bytes + sum(map(index.part_bytes, index.parts)),
        "part_bytes": {name: index.part_bytes(name) for name in index.parts}, **machine(),
        "wall_s": elapsed()})


if __name__ == "__main__":
    main(run)
