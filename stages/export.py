"""Stage `export@arch`: the distilled student in one file and each teacher block as its own shard, with a
manifest (bytes, sha256) and the loading orders the runtime may follow: prefix, suffix and the best order
on the *validation* accuracies (area under accuracy against bytes loaded)."""
import pandas as pd

from pwl import paths
from pwl.build import load_trained_mixed
from pwl.data import load_prepared
from pwl.evaluation import block_bytes
from pwl.runtime import export_shards, model_configs
from pwl.stage import elapsed, main, setup, write_json
from pwl.states import best_order, prefix_order, suffix_order


def run():
    params, args = setup(__doc__)
    cfg = params.for_arch(args.arch)
    ds = load_prepared(paths.DATA)
    mixed = load_trained_mixed(args.arch, cfg, ds)
    n = mixed.num_blocks
    table = pd.read_csv(paths.states_table(args.arch), dtype={"state": str})
    val_acc = dict(zip(table["state"], table["val_acc"]))
    orders = {"prefix": prefix_order(n), "suffix": suffix_order(n),
              "best_val": best_order(val_acc, block_bytes(mixed.teacher))}
    manifest = export_shards(mixed, paths.shards(args.arch),
                             model_configs(cfg.teacher, cfg.student, ds.in_chans, ds.num_classes, ds.image_size),
                             orders)
    write_json(paths.metrics(args.arch, "export"), {
        "orders": orders, "files": {k: v["bytes"] for k, v in manifest["files"].items()}, "wall_s": elapsed()})


if __name__ == "__main__":
    main(run)
