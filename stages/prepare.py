"""Stage `prepare`: the dataset as train/val/test uint8 tensors + manifest (the val split picks checkpoints)."""
from pwl import data, paths
from pwl.compute import seed_and_threads
from pwl.env import machine
from pwl.stage_cli import elapsed, main, setup, write_json


def run():
    params, _ = setup(__doc__, with_arch=False)
    seed_and_threads(params)
    manifest = data.prepare(params.data, params.seed, paths.DATA, paths.RAW)
    counts = {k: v["count"] for k, v in manifest["splits"].items()}
    write_json(paths.prepare_metrics(params.profile), {"dataset": manifest["dataset"], "source": manifest["source"],
                                                **counts, **machine(), "wall_s": elapsed()})
    print(f"prepared {manifest['dataset']} from {manifest['source']}: {counts}")


if __name__ == "__main__":
    main(run)
