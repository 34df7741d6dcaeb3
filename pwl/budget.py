"""Budgeted deployment: which loading state to ship when only so many weight bytes fit on the device.

The bytes of a state are those of the parts it runs: for each block the teacher's or the student's (block 1
with its owner's embedder, block N with its owner's head) and, at every boundary where the owner changes, the
converter that carries the features across (E_i teacher -> student, D_i student -> teacher). They are read
from the tensor headers of the exported shards (`export@arch` writes them per state to
`reports/metrics/<arch>/state_bytes.csv`), so they are exactly the tensor bytes a device would hold.

    python -m pwl.budget --arch vgg --max-bytes 2e6

names the state with the best *validation* accuracy among those that fit (ties: fewer bytes) and prints its
test accuracy, measured once. Missing files or a budget nothing fits: a message and exit status 2.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

import pandas as pd

from . import paths, table_schema
from .config import load_params
from .errors import PWLError
from .states import STUDENT, TEACHER, all_states, label

BYTES_TABLE = "state_bytes.csv"


def bytes_table_path(name: str, arch: str) -> Path:
    return paths.arch_metrics(name, arch, BYTES_TABLE)


def tensor_bytes(path: Path) -> dict[str, int]:
    """Bytes of every tensor in a safetensors file, from its header alone (no tensor is read)."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        return {k: v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__"}
    except (OSError, struct.error, ValueError, KeyError, TypeError) as e:
        raise PWLError(f"cannot read the tensor header of {path} ({e})", "export the shards again") from None


def part_bytes(shard_dir: Path) -> dict[str, list[int]]:
    """Bytes per part from a shard directory: teacher / student per block (embedder in block 1, head in block
    N), enc / dec converters per inner boundary."""
    shard_dir = Path(shard_dir)
    try:
        manifest = json.loads((shard_dir / "manifest.json").read_text())
        n, files = int(manifest["num_blocks"]), manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PWLError(f"cannot read the shard manifest in {shard_dir} ({e})", "run the export stage") from None
    parts = {"teacher": [0] * n, "student": [0] * n, "enc": [0] * (n - 1), "dec": [0] * (n - 1)}
    for name, entry in files.items():
        for key, nbytes in tensor_bytes(shard_dir / name).items():
            head, _, rest = key.partition(".")
            if entry["role"] == "teacher":
                parts["teacher"][entry["block"] - 1] += nbytes
            elif entry["role"] == "student":
                j = {"embed": 0, "head": n - 1}.get(head)
                if j is None and head == "blocks":
                    j = int(rest.split(".")[0])
                if j is None:
                    raise PWLError(f"student tensor {key!r} belongs to no block", "export the shards again")
                parts["student"][j] += nbytes
            elif entry["role"] == "converters" and head in ("enc", "dec"):
                parts[head][int(rest.split(".")[0])] += nbytes
            else:
                raise PWLError(f"tensor {key!r} of {name} belongs to no part", "export the shards again")
    return parts


def state_bytes(parts: dict[str, list[int]], state: str) -> dict[str, int]:
    """Weight bytes `state` needs, split into teacher, student and converter bytes."""
    teacher = sum(b for b, c in zip(parts["teacher"], state) if c == TEACHER)
    student = sum(b for b, c in zip(parts["student"], state) if c == STUDENT)
    conv = sum(parts["enc"][i] if (a, b) == (TEACHER, STUDENT) else parts["dec"][i]
               for i, (a, b) in enumerate(zip(state, state[1:])) if a != b)
    return {"bytes": teacher + student + conv, "teacher_bytes": teacher, "student_bytes": student,
            "converter_bytes": conv}


def bytes_table(shard_dir: Path) -> pd.DataFrame:
    """One row per state: its label and the bytes it needs (total, teacher, student, converters)."""
    parts = part_bytes(shard_dir)
    n = len(parts["teacher"])
    return pd.DataFrame([{"state": s, "label": label(s), **state_bytes(parts, s)} for s in all_states(n)])


def pareto_front(table: pd.DataFrame, cost: str = "bytes", value: str = "test_acc") -> pd.DataFrame:
    """The states no other state beats on both axes (fewer or equal `cost` and higher or equal `value`, one
    strictly), cheapest first; of states with equal cost and value the first by name is kept."""
    rows = table.sort_values([cost, value, "state"], ascending=[True, False, True], kind="stable")
    best, keep = float("-inf"), []
    for idx, v in zip(rows.index, rows[value]):
        if v > best:
            keep.append(idx)
            best = v
    return rows.loc[keep].reset_index(drop=True)


def choose(table: pd.DataFrame, max_bytes: float, on: str = "val_acc") -> pd.Series:
    """The state with the best `on` accuracy among those within `max_bytes` (ties: fewer bytes, then name)."""
    fits = table[table["bytes"] <= max_bytes]
    if fits.empty:
        smallest = table.loc[table["bytes"].idxmin()]
        raise PWLError(f"no state fits in {max_bytes:,.0f} bytes: the smallest, {smallest['state']}, needs "
                       f"{int(smallest['bytes']):,} bytes", f"raise --max-bytes to at least {int(smallest['bytes'])}")
    return fits.sort_values([on, "bytes", "state"], ascending=[False, True, True], kind="stable").iloc[0]


def load(name: str, arch: str, seed) -> pd.DataFrame:
    """evaluate's accuracies (val, test; fractions) of the exported replica joined with export's bytes per
    state, from report `name`."""
    states, nbytes_path = paths.states_table(name, arch, seed), bytes_table_path(name, arch)
    acc = table_schema.states_table(states, arch, seed)
    nbytes = table_schema.bytes_table(nbytes_path, arch)
    table = nbytes.merge(acc[["state", "val_acc", "test_acc"]], on="state", how="inner")
    if len(table) != len(nbytes) or len(table) != len(acc):
        raise PWLError(f"{states} and {nbytes_path} list different states",
                       f"rerun `dvc repro export@{arch}` after evaluate")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pwl.budget", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, help="an arch the pipeline has evaluated and exported (e.g. vgg)")
    parser.add_argument("--max-bytes", required=True, type=float, help="weight bytes the device can hold, e.g. 2e6")
    parser.add_argument("--params", default="params.yaml", help="the run whose report to read (its name and seed)")
    args = parser.parse_args(argv)
    try:
        if not args.max_bytes > 0:
            raise PWLError(f"--max-bytes {args.max_bytes} must be a positive number of bytes", "e.g. --max-bytes 2e6")
        params = load_params(args.params)
        if args.arch not in params.arch:
            raise PWLError(f"unknown arch {args.arch!r} (known in {args.params}: {', '.join(sorted(params.arch))})",
                           f"pass one the pipeline has exported, e.g. --arch {params.archs[0]}")
        table = load(params.profile, args.arch, params.seed)
        best = choose(table, args.max_bytes)
    except PWLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    full = table.loc[table["state"] == "T" * len(best["state"])].iloc[0]
    print(f"{args.arch}: best state within {args.max_bytes:,.0f} bytes, chosen on validation: {best['state']} "
          f"({label(best['state'])}, {int(best['bytes']):,} bytes = {100 * best['bytes'] / full['bytes']:.0f}% of the "
          f"teacher's {int(full['bytes']):,})")
    print(f"  validation accuracy {100 * best['val_acc']:.2f}%, test accuracy {100 * best['test_acc']:.2f}% "
          f"(teacher {100 * full['test_acc']:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
